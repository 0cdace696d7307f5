using StepAudio.Native;

namespace StepAudio.Tests;

public class NativeLibraryTests
{
    [Fact]
    public void LoadsWithTheExpectedAbi()
    {
        NativeLibraryInfo.EnsureLoaded();
        Assert.Equal(5, NativeLibraryInfo.AbiVersion);
    }
}
