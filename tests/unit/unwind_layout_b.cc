// One of two libraries whose memward_test_layout_call(callback, argument,
// decoy) makes its call at the same offset as the other's, from another
// frame layout. Here the frame is 32 bytes, and `decoy` lies where the
// other library's rule (a 16-byte frame) would read the return address.
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
  pushq %rdx
  .cfi_def_cfa_offset 24
  subq $8, %rsp
  .cfi_def_cfa_offset 32
  movq %rdi, %rax
  movq %rsi, %rdi
  call *%rax
  addq $8, %rsp
  .cfi_def_cfa_offset 24
  popq %rdx
  .cfi_def_cfa_offset 16
  popq %rbx
  .cfi_def_cfa_offset 8
  ret
  .cfi_endproc
  .size memward_test_layout_call, . - memward_test_layout_call
)");
