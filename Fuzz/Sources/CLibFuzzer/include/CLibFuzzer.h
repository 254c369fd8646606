// libFuzzer's driver entry point (compiler-rt's FuzzerInterface.h), for fuzz targets whose `main`
// SwiftPM names after the module: that `main` hands the command line and the target to libFuzzer.
#ifndef CLIBFUZZER_H
#define CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>

/// Runs libFuzzer with `argc`/`argv` (its usual flags and corpus folders) on `callback`.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
