.section .text.boot, "ax"
.global _start
_start:
    // FP/SIMD on at EL1 (CPACR_EL1.FPEN = 0b11).
    mov     x9, #(3 << 20)
    msr     cpacr_el1, x9
    isb
    mrs     x9, mpidr_el1
    and     x9, x9, #0xff
    adrp    x10, __stack_top
    add     x10, x10, :lo12:__stack_top
    mov     x11, #0x10000
    madd    x10, x9, x11, x10
    mov     sp, x10
    adrp    x9, guest_vectors
    add     x9, x9, :lo12:guest_vectors
    msr     vbar_el1, x9
    isb
    cbnz    x0, 3f              // x0 != 0: a secondary vCPU (context id)
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    str     xzr, [x9], #8
    b       1b
2:  bl      guest_entry
3:  bl      guest_secondary_entry
4:  wfe
    b       4b

.macro GVEC kind
    .balign 0x80
    sub     sp, sp, #256
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x30, [sp, #144]
    mov     x0, #\kind
    mrs     x1, esr_el1
    mrs     x2, far_el1
    mrs     x3, elr_el1
    bl      guest_exception64
    msr     elr_el1, x0
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x30, [sp, #144]
    add     sp, sp, #256
    eret
.endm

.section .text.vectors, "ax"
.balign 0x800
.global guest_vectors
guest_vectors:
    GVEC 0
    GVEC 1
    GVEC 2
    GVEC 3
    GVEC 4
    GVEC 5
    GVEC 6
    GVEC 7
    GVEC 8
    GVEC 9
    GVEC 10
    GVEC 11
    GVEC 12
    GVEC 13
    GVEC 14
    GVEC 15
