// AArch32 (ARMv7-A, ARM state) entry and vectors of the bare-metal guests.
.syntax unified
.arm
.arch_extension sec
.arch_extension virt

.section .text.boot, "ax"
.global _start
_start:
    // r0 = 0 on the boot vCPU, the PSCI context id on a secondary.
    mrc     p15, 0, r4, c0, c0, 5       // MPIDR
    and     r4, r4, #0xff
    ldr     r5, =__stack_top
    mov     r6, #0x10000
    mla     r5, r4, r6, r5
    cps     #0x17                       // ABT mode: its own stack
    sub     sp, r5, #0x8000
    cps     #0x1b                       // UND mode
    sub     sp, r5, #0xc000
    cps     #0x13                       // back to SVC
    mov     sp, r5
    ldr     r6, =guest_vectors32
    mcr     p15, 0, r6, c12, c0, 0      // VBAR
    isb
    cmp     r0, #0
    bne     3f
    ldr     r6, =__bss_start
    ldr     r7, =__bss_end
    mov     r8, #0
1:  cmp     r6, r7
    strlo   r8, [r6], #4
    blo     1b
    bl      guest_entry
3:  bl      guest_secondary_entry
4:  wfe
    b       4b

.section .text.vectors, "ax"
.balign 32
.global guest_vectors32
guest_vectors32:
    b       bad_reset
    b       bad_undef
    b       bad_svc
    b       bad_pabt
    b       dabt
    b       bad_unused
    b       bad_irq
    b       bad_fiq

dabt:
    sub     lr, lr, #8                  // the faulting instruction
    push    {{r0-r3, r12, lr}}
    mov     r0, #4
    mrc     p15, 0, r1, c5, c0, 0       // DFSR
    mrc     p15, 0, r2, c6, c0, 0       // DFAR
    mov     r3, lr
    bl      guest_exception32           // returns where to resume
    str     r0, [sp, #20]
    pop     {{r0-r3, r12, lr}}
    movs    pc, lr

.macro BAD name, kind
\name:
    mov     r0, #\kind
    mov     r1, lr
    bl      guest_bad_exception32
.endm
    BAD bad_reset, 0
    BAD bad_undef, 1
    BAD bad_svc, 2
    BAD bad_pabt, 3
    BAD bad_unused, 5
    BAD bad_irq, 6
    BAD bad_fiq, 7
