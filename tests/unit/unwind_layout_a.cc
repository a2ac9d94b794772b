// One of two libraries whose memward_test_layout_call(callback, argument,
// decoy) makes its call at the same offset as the other's, from another
// frame layout. Here the frame is 16 bytes: the return address and rbx.
// The cached unwinder test loads one at the other's former address.
asm(R"(
  .text
  .globl memward_test_layout_call
  .type memward_test_layout_call, @function
  .p2align 6
memward_test_layout_call:
  .cfi_startproc
  pushq %rbx
  .cfi_def_cfa_offset 16
  .cfi_offset %rbx, -16
  .byte 0x0f, 0x1f, 0x44, 0x00, 0x00  # a 5-byte nop, as long as the other's push and sub
  movq %rdi, %rax
  movq %rsi, %rdi
  call *%rax
  popq %rbx
  .cfi_def_cfa_offset 8
  .byte 0x0f, 0x1f, 0x44, 0x00, 0x00
  ret
  .cfi_endproc
  .size memward_test_layout_call, . - memward_test_layout_call
)");
