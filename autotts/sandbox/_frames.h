/* The sandbox protocol's integer layout, shared by the parent's (_wire.c) and the worker's
 * (_mirror.c) compiled paths: little-endian, `I` unsigned 32-bit and `q` signed 64-bit
 * (autotts/sandbox/protocol.py), and the engine's constants both sides check against. */
#ifndef AUTOTTS_SANDBOX_FRAMES_H
#define AUTOTTS_SANDBOX_FRAMES_H

#include <stdint.h>

#define NO_MODEL 0xFFFFFFFFu /* protocol.NO_MODEL: a model field that names none */
#define MAX_STEPS 1000000    /* arguments.MAX_STEPS_PER_ACTION */

static inline void
put_u32(char *p, uint32_t v)
{
    for (int b = 0; b < 4; b++)
        p[b] = (char)((v >> (8 * b)) & 0xFF);
}

static inline void
put_i64(char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int b = 0; b < 8; b++)
        p[b] = (char)((u >> (8 * b)) & 0xFF);
}

static inline uint32_t
get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline int64_t
get_i64(const unsigned char *p)
{
    uint64_t u = 0;
    for (int b = 7; b >= 0; b--)
        u = u << 8 | p[b];
    return (int64_t)u;
}

#endif
