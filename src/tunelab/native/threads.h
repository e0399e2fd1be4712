/* How many OpenMP threads a kernel takes (included by each .c file): one below SERIAL
 * elements of work, where starting the second thread costs more than it saves, else the
 * threads PyTorch uses. */
#ifndef TUNELAB_THREADS_H
#define TUNELAB_THREADS_H
#include <stdint.h>

#define SERIAL 32768

static inline int threads_for(int64_t elements, int threads) {
    return elements < SERIAL ? 1 : threads;
}

#endif
