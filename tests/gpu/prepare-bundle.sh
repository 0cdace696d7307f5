#!/usr/bin/env bash
# Publishes the C# test runner (self-contained) and the CLI (self-contained, trimmed) for linux-x64 and packs them
# into .carry/bundle/bundle.tar.xz (git-ignored), to be carried to the GPU machine, which has no dotnet.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
rm -rf .publish && mkdir -p .carry/bundle
dotnet publish tests/StepAudio.Tests -c Release -r linux-x64 --self-contained -o .publish/tests -nologo -v q
dotnet publish src/StepAudio.Cli -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -o .publish/cli -nologo -v q
tar -C .publish -cf - tests cli | xz -T0 -6 > .carry/bundle/bundle.tar.xz
ls -la .carry/bundle/bundle.tar.xz
