using StepAudio.Native;

namespace StepAudio.Tests;

public class NativeLibraryTests
{
    [Fact]
    public void LoadsWithTheExpectedAbi()
    {
        NativeLibraryInfo.EnsureLoaded();
        Assert.Equal(3, NativeLibraryInfo.AbiVersion);
    }
}
