"""ctest: AVX-512 code cannot leak into the code other CPUs run.

Arguments: the object files of sparsecore_core. For an AVX-512 object (*_avx512.cc.o,
compiled with -mavx512f ...), every symbol it defines with external linkage must live in
the namespace sparsecore::cpu::avx512:: -- a shared inline helper (or a standard-library
template) emitted there as a weak symbol could be the copy the linker keeps for every
caller, and an AVX2-only CPU would die with SIGILL. Every other object must contain no
instruction with an EVEX prefix (0x62: AVX-512 only) at all. Exit 0 = pass.
"""

import re
import subprocess
import sys

ALLOWED = "sparsecore::cpu::avx512::"
LEGACY_PREFIXES = {0x66, 0x67, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0xF0}


def external_symbols(obj):
    out = subprocess.run(["nm", "-C", "--defined-only", obj], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split(maxsplit=2)
        # Upper-case types (T, W, V, D, B, R, ...) and u / v / w / i are visible to the
        # linker; lower-case t, d, b, r are local to the object.
        if len(parts) == 3 and (parts[1].isupper() or parts[1] in ("u", "v", "w", "i")):
            yield parts[1], parts[2]


def evex_functions(obj):
    out = subprocess.run(["objdump", "-d", "-w", "-C", obj], capture_output=True, text=True, check=True).stdout
    header = re.compile(r"^[0-9a-f]+ <(.*)>:$")
    insn = re.compile(r"^\s*[0-9a-f]+:\t((?:[0-9a-f]{2} )+)")
    current, found = None, set()
    for line in out.splitlines():
        m = header.match(line)
        if m:
            current = m.group(1)
            continue
        m = insn.match(line)
        if m:
            raw = [int(b, 16) for b in m.group(1).split()]
            i = 0
            while i < len(raw) and raw[i] in LEGACY_PREFIXES:
                i += 1
            if i < len(raw) and raw[i] == 0x62:
                found.add(current)
    return found


def main(objects):
    failures, avx512_objects, checked = [], 0, 0
    for obj in objects:
        if not obj.endswith(".o"):
            continue
        checked += 1
        if obj.endswith("_avx512.cc.o"):
            avx512_objects += 1
            for kind, name in external_symbols(obj):
                # DW.ref.__gxx_personality_v0: the exception-handling personality pointer
                # (data, identical in every object), not code.
                if not name.startswith(ALLOWED) and not name.startswith("DW.ref."):
                    failures.append(f"{obj}: external symbol outside {ALLOWED}: [{kind}] {name}")
            if not evex_functions(obj):
                failures.append(f"{obj}: no AVX-512 instruction at all: the check would see nothing")
        else:
            for fn in sorted(evex_functions(obj)):
                failures.append(f"{obj}: AVX-512 (EVEX) instruction in {fn}")
    print(f"checked {checked} objects ({avx512_objects} AVX-512)")
    for f in failures:
        print("FAILED", f)
    if checked == 0:
        print("FAILED: no object files given")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
