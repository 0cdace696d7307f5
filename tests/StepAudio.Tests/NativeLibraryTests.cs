using StepAudio.Native;

namespace StepAudio.Tests;

public class NativeLibraryTests
{
    [Fact]
    public void LoadsWithTheExpectedAbi()
    {
        NativeLibraryInfo.EnsureLoaded();
        Assert.Equal(4, NativeLibraryInfo.AbiVersion);
    }
}
