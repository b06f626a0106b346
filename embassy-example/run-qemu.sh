#!/usr/bin/env bash
# Runs a firmware ELF on QEMU's mps2-an386 (Cortex-M4) or virt (RV32), decodes its defmt log
# with defmt-print, and exits with the firmware's own status (0 = the scenario passed).
#
# -icount shift=0,sleep=off: virtual time advances one nanosecond per instruction and skips
# ahead while the CPU waits for an interrupt, so the run is deterministic and seconds of timers
# take a fraction of a second.
set -uo pipefail
elf=${1:?usage: run-qemu.sh FIRMWARE.elf}
# The machine from the ELF's e_machine (offset 18): 0x28 ARM, 0xf3 RISC-V.
case $(od -An -tx1 -j18 -N1 "$elf" | tr -d ' ') in
  28) qemu=(qemu-system-arm -machine mps2-an386 -cpu cortex-m4) ;;
  f3) qemu=(qemu-system-riscv32 -machine virt -bios none) ;;
  *) echo "run-qemu.sh: $elf is neither an ARM nor a RISC-V ELF" >&2; exit 126 ;;
esac
if ! command -v "${qemu[0]}" >/dev/null 2>&1; then
  echo "${qemu[0]} is missing: run .ci/install-qemu (Debian bookworm-backports)" >&2
  exit 127
fi
if ! command -v defmt-print >/dev/null 2>&1; then
  echo "defmt-print is missing: cargo install defmt-print --locked" >&2
  exit 127
fi
timeout "${QEMU_TIMEOUT:-20}" "${qemu[@]}" \
  -nographic -monitor none -serial none \
  -semihosting-config enable=on,target=native \
  -icount shift=0,sleep=off \
  -kernel "$elf" \
  | defmt-print -e "$elf"
status=("${PIPESTATUS[@]}")
if [ "${status[0]}" -eq 124 ]; then
  echo "run-qemu.sh: the firmware did not finish within ${QEMU_TIMEOUT:-20} s" >&2
fi
if [ "${status[0]}" -eq 0 ] && [ "${status[1]}" -ne 0 ]; then
  echo "run-qemu.sh: defmt-print failed (exit ${status[1]}): the log could not be decoded" >&2
  exit "${status[1]}"
fi
exit "${status[0]}"
