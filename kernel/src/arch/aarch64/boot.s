// Entry points and exception vectors of the AArch64 EL2 kernel.

.equ FRAME_SIZE, 272            // TrapFrame: x0..x30, elr, spsr, pad
.equ STACK_SIZE, 0x40000        // per-pCPU EL2 stack (256 KiB)

.section .text.boot, "ax"
// The arm64 Image header (Linux's Documentation/arch/arm64/booting.rst), so
// the Raspberry Pi firmware, U-Boot `booti` and QEMU `-kernel` all load
// this one image. It is position independent: linked at 0 and relocated
// at entry, so it runs wherever a 64 KiB aligned loader puts it.
.global _start
_start:
    b       start                   // code0
    .word   0                       // code1
    .quad   0x80000                 // text_offset (as the RPi firmware loads)
    .quad   __image_size            // image_size, with .bss and stacks
    .quad   0xa                     // flags: little-endian, 4 KiB pages, anywhere
    .quad   0, 0, 0                 // res2..res4
    .ascii  "ARM\x64"               // magic
    .word   0                       // res5

start:
    // x0 holds the DTB (Linux boot protocol).
    mov     x20, x0
    mrs     x19, mpidr_el1
    and     x19, x19, #0xff
    cbnz    x19, park               // only pCPU 0 boots; others wait for CPU_ON
    // Apply R_AARCH64_RELATIVE relocations: the link address is 0, so the
    // load address is the displacement. The MMU is off: plain stores. Only
    // the loaded writable data is patched (defmt's linker marker has one in
    // its unloaded section); xtask refuses any other relocation type.
    adr     x21, _start
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
    adrp    x6, __reloc_start
    add     x6, x6, :lo12:__reloc_start
    adrp    x7, __bss_start
    add     x7, x7, :lo12:__bss_start
    sub     x6, x6, x21             // link-time offsets, as r_offset is
    sub     x7, x7, x21
1:  cmp     x1, x2
    b.hs    2f
    ldp     x3, x4, [x1], #16       // r_offset, r_info
    ldr     x5, [x1], #8            // r_addend
    cmp     x4, #1027               // R_AARCH64_RELATIVE
    b.ne    1b
    cmp     x3, x6
    b.lo    1b
    cmp     x3, x7
    b.hs    1b
    add     x5, x5, x21
    str     x5, [x3, x21]
    b       1b
2:  adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
3:  cmp     x1, x2
    b.hs    4f
    str     xzr, [x1], #8
    b       3b
    // What was written with the MMU off is in memory; drop any stale copy
    // a loader left in the caches before they are turned on.
4:  mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4
    mov     x4, #4
    lsl     x3, x4, x3              // smallest D-cache line
    adrp    x1, __image_start
    add     x1, x1, :lo12:__image_start
    adrp    x2, __image_end
    add     x2, x2, :lo12:__image_end
5:  dc      ivac, x1
    add     x1, x1, x3
    cmp     x1, x2
    b.lo    5b
    dsb     sy
    ic      iallu
    dsb     sy
    isb
    adrp    x1, __stacks_start
    add     x1, x1, :lo12:__stacks_start
    add     sp, x1, #STACK_SIZE
    sub     sp, sp, #FRAME_SIZE     // the trap frame slot stays out of Rust's way
    mov     x0, x20
    mrs     x1, CurrentEL
    lsr     x1, x1, #2
    mov     x2, x21
    bl      kmain
park:
    wfe
    b       park

// Secondary pCPUs arrive here from PSCI CPU_ON with x0 = pCPU index. The
// EL2 MMU and caches go on before anything touches memory but the
// registers pCPU 0 left (cleaned to the PoC) in SECONDARY_MMU: MAIR, TCR,
// TTBR0, SCTLR. Then the stack, cacheable and coherent from the start.
.global _secondary_start
_secondary_start:
    mov     x19, x0
    adrp    x1, SECONDARY_MMU
    add     x1, x1, :lo12:SECONDARY_MMU
    ldp     x2, x3, [x1]
    ldp     x4, x5, [x1, #16]
    msr     mair_el2, x2
    msr     tcr_el2, x3
    msr     ttbr0_el2, x4
    isb
    tlbi    alle2
    ic      iallu
    dsb     sy
    isb
    msr     sctlr_el2, x5
    isb
    adrp    x1, __stacks_start
    add     x1, x1, :lo12:__stacks_start
    add     x2, x19, #1
    lsl     x2, x2, #18
    add     sp, x1, x2
    sub     sp, sp, #FRAME_SIZE
    mov     x0, x19
    bl      secondary_main
    b       park

// Secondary pCPUs released from a spin table arrive here (x0 = 0): their
// index is the position of their MPIDR affinity in CPU_MPIDRS, which pCPU 0
// wrote with its MMU off (in memory, as this CPU reads it).
.global _spin_start
_spin_start:
    mrs     x2, mpidr_el1
    and     x2, x2, #0xffffff
    adrp    x1, CPU_MPIDRS
    add     x1, x1, :lo12:CPU_MPIDRS
    mov     x0, #0
1:  ldr     x3, [x1, x0, lsl #3]
    cmp     x3, x2
    b.eq    _secondary_start
    add     x0, x0, #1
    cmp     x0, #8
    b.lo    1b
    b       _spin_park              // not in the table: never used

// Spin-table CPUs the hypervisor does not use (maxcpus=) wait here, with
// interrupts masked, rather than polling the firmware's spin table.
.global _spin_park
_spin_park:
    msr     daifset, #0xf
1:  wfi
    b       1b

// Save the lower EL's registers into a TrapFrame on the EL2 stack.
.macro SAVE_FRAME
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x0, elr_el2
    mrs     x1, spsr_el2
    stp     x30, x0, [sp, #240]
    str     x1, [sp, #256]
.endm

.macro VECTOR handler
    .balign 0x80
    SAVE_FRAME
    mov     x0, sp
    bl      \handler
    b       exit_to_guest
.endm

.macro VECTOR_BAD kind
    .balign 0x80
    SAVE_FRAME
    mov     x0, sp
    mov     x1, #\kind
    bl      el2_unexpected
1:  wfe
    b       1b
.endm

.section .text.vectors, "ax"
.balign 0x800
.global el2_vectors
el2_vectors:
    // Current EL with SP_EL0
    VECTOR_BAD 0
    VECTOR_BAD 1
    VECTOR_BAD 2
    VECTOR_BAD 3
    // Current EL with SP_ELx: a hypervisor bug
    VECTOR_BAD 4
    VECTOR_BAD 5
    VECTOR_BAD 6
    VECTOR_BAD 7
    // Lower EL, AArch64
    VECTOR lower_sync
    VECTOR lower_irq
    VECTOR_BAD 10
    VECTOR lower_serror
    // Lower EL, AArch32
    VECTOR lower_sync
    VECTOR lower_irq
    VECTOR_BAD 14
    VECTOR lower_serror

// Restore the TrapFrame at sp and return to the lower EL.
.global exit_to_guest
exit_to_guest:
    ldr     x1, [sp, #256]
    ldp     x30, x0, [sp, #240]
    msr     elr_el2, x0
    msr     spsr_el2, x1
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #FRAME_SIZE
    eret

// enter_frame(frame): make `frame` (at the top of this pCPU's stack) the
// current trap frame and run the guest it describes.
.global enter_frame
enter_frame:
    mov     sp, x0
    b       exit_to_guest

// FP/SIMD state of a vCPU: q0-q31, then FPCR and FPSR (528 bytes).
.arch_extension fp
.arch_extension simd
.global fp_save
fp_save:
    stp     q0, q1, [x0, #0]
    stp     q2, q3, [x0, #32]
    stp     q4, q5, [x0, #64]
    stp     q6, q7, [x0, #96]
    stp     q8, q9, [x0, #128]
    stp     q10, q11, [x0, #160]
    stp     q12, q13, [x0, #192]
    stp     q14, q15, [x0, #224]
    stp     q16, q17, [x0, #256]
    stp     q18, q19, [x0, #288]
    stp     q20, q21, [x0, #320]
    stp     q22, q23, [x0, #352]
    stp     q24, q25, [x0, #384]
    stp     q26, q27, [x0, #416]
    stp     q28, q29, [x0, #448]
    stp     q30, q31, [x0, #480]
    mrs     x1, fpcr
    mrs     x2, fpsr
    add     x0, x0, #512
    stp     x1, x2, [x0]
    ret

.global fp_restore
fp_restore:
    ldp     q0, q1, [x0, #0]
    ldp     q2, q3, [x0, #32]
    ldp     q4, q5, [x0, #64]
    ldp     q6, q7, [x0, #96]
    ldp     q8, q9, [x0, #128]
    ldp     q10, q11, [x0, #160]
    ldp     q12, q13, [x0, #192]
    ldp     q14, q15, [x0, #224]
    ldp     q16, q17, [x0, #256]
    ldp     q18, q19, [x0, #288]
    ldp     q20, q21, [x0, #320]
    ldp     q22, q23, [x0, #352]
    ldp     q24, q25, [x0, #384]
    ldp     q26, q27, [x0, #416]
    ldp     q28, q29, [x0, #448]
    ldp     q30, q31, [x0, #480]
    add     x0, x0, #512
    ldp     x1, x2, [x0]
    msr     fpcr, x1
    msr     fpsr, x2
    ret

// ---- AArch32 SPSR bank synchronisation (see spsr32.rs) ----
// aarch32_trip(pc, spsr, r0) -> esr: run the AArch32 trampoline at EL1 with
// `spsr` and r0, until it traps back (its HVC), and return that ESR. The
// guest's registers are not live here (they sit in trap frames), so the
// trip may clobber x0-x18; x19-x30 and VBAR_EL2 are kept.
.global aarch32_trip
aarch32_trip:
    sub     sp, sp, #112
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    mrs     x9, vbar_el2
    str     x9, [sp, #96]
    adrp    x9, trip_vectors
    add     x9, x9, :lo12:trip_vectors
    msr     vbar_el2, x9
    isb
    msr     elr_el2, x0
    msr     spsr_el2, x1
    mov     x0, x2
    eret

// Any exception during a trip ends it; SP_EL2 is what it was at the eret.
.macro TRIP_END
    .balign 0x80
    b       trip_return
.endm

.balign 0x800
trip_vectors:
    .rept 16
    TRIP_END
    .endr

trip_return:
    ldr     x9, [sp, #96]
    msr     vbar_el2, x9
    isb
    mrs     x0, esr_el2
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    add     sp, sp, #112
    ret

// The trampoline page (AArch32, ARM state): switch to the mode in r0, then
// trap back.
.section .text.trampoline32, "ax"
.balign 4096
.global aarch32_trampoline
aarch32_trampoline:
    .word   0xe121f000              // msr  cpsr_c, r0
    .word   0xe1400070              // hvc  #0
    .balign 4096
