"""Build fastxent's kernels: one extension per x86-64 instruction set, OpenMP probed.

Environment switches
--------------------
FASTXENT_OPENMP   auto (default): use OpenMP when the compiler can build it, else a serial
                  build with a loud warning; 1: OpenMP is required (CI); 0: serial build.
FASTXENT_DEBUG    1: bounds checks on, -O0 -g (slow; for debugging and sanitizers).
FASTXENT_ISAS     comma-separated subset of baseline,avx2,avx512 to build (default: all that
                  the compiler supports; baseline is always built).

The extensions compile in parallel (one per core), and each built extension is kept in
``build/fastxent-cache/`` under a hash of everything that goes into it (generated C source,
headers, flags, compiler, Python and NumPy), so a second install from the same checkout --
``pip install .`` then ``pip install -e ".[test]"`` -- copies it instead of compiling again.
Delete ``build/`` to force a rebuild.
"""

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return (n >= 1 && omp_get_max_threads() >= 1) ? 0 : 1;
}
"""
EMPTY_PROBE = "int main(void) { return 0; }\n"

# The same kernel source compiled once per instruction set; fastxent/_core/dispatch.py picks one at
# import time from the CPU's features.
X86_64 = platform.machine().lower() in ("x86_64", "amd64")
ISA_FLAGS = {
    "baseline": [],
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mavx2", "-mfma",
               "-mprefer-vector-width=512"],
}
DEBUG = os.environ.get("FASTXENT_DEBUG", "0") not in ("", "0")
POSIX = os.name == "posix"


def _builds(compiler, source, cflags, ldflags):
    """Return True when `source` compiles and links with the given flags."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write(source)
        try:
            objects = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
            compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=ldflags)
        except Exception:
            return False
    return True


def _wanted_isas():
    names = os.environ.get("FASTXENT_ISAS", "baseline,avx2,avx512").split(",")
    names = [n.strip() for n in names if n.strip()]
    unknown = set(names) - set(ISA_FLAGS)
    if unknown:
        raise RuntimeError(f"FASTXENT_ISAS: unknown instruction sets {sorted(unknown)}")
    if not X86_64:
        return ["baseline"]
    return ["baseline"] + [n for n in ("avx2", "avx512") if n in names]


CACHE_DIR = os.path.join("build", "fastxent-cache")
KERNEL_DIR = os.path.join("fastxent", "_core")   # the kernel sources


def _compiler_version(compiler):
    """The compiler's own description of itself (part of the cache key)."""
    command = list(getattr(compiler, "compiler_so", None) or ["cc"])
    while len(command) > 1 and os.path.basename(command[0]) in ("ccache", "sccache"):
        command = command[1:]                     # the compiler behind a compiler cache
    try:
        return subprocess.run([command[0], "--version"], capture_output=True, text=True,
                              timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _cache_key(ext, compiler, compiler_version):
    """A hash of every input of an extension's build; equal keys build equal files."""
    import numpy
    digest = hashlib.sha256()
    headers = sorted(os.path.join(KERNEL_DIR, name) for name in os.listdir(KERNEL_DIR)
                     if name.endswith(".h"))
    for path in list(ext.sources) + headers:
        with open(path, "rb") as fh:
            digest.update(path.encode() + b"\0" + fh.read() + b"\0")
    settings = [ext.name, ext.extra_compile_args, ext.extra_link_args, ext.define_macros,
                ext.include_dirs, ext.libraries, getattr(compiler, "compiler_so", None),
                getattr(compiler, "linker_so", None), compiler_version,
                sysconfig.get_config_var("EXT_SUFFIX"), sys.version, numpy.__version__,
                DEBUG]
    digest.update(repr(settings).encode())
    return digest.hexdigest()[:32]


def _copy_atomically(source, target):
    """Copy to a temporary name, then rename: a process that has the old file loaded keeps
    it, and no reader ever sees a half-written file."""
    partial = f"{target}.{os.getpid()}.tmp"
    shutil.copyfile(source, partial)
    os.replace(partial, target)


class BuildExt(build_ext):
    """build_ext that probes OpenMP and the ISA flags with the compiler that will be used,
    builds the extensions in parallel and reuses identical earlier builds."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def build_extension(self, ext):
        target = self.get_ext_fullpath(ext.name)
        cached = os.path.join(CACHE_DIR, f"{ext.name}-{self._keys[ext.name]}"
                              f"{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}")
        if os.path.isfile(cached) and not self.force:
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
            _copy_atomically(cached, target)
            print(f"fastxent: {ext.name}: reusing the identical build {cached}",
                  file=sys.stderr)
            return
        super().build_extension(ext)
        os.makedirs(CACHE_DIR, exist_ok=True)
        _copy_atomically(target, cached)

    def build_extensions(self):
        mode = os.environ.get("FASTXENT_OPENMP", "auto").strip().lower()
        if mode not in ("auto", "0", "1"):
            raise RuntimeError(f"FASTXENT_OPENMP must be auto, 0 or 1, got {mode!r}")
        omp = mode != "0" and _builds(self.compiler, OPENMP_PROBE, ["-fopenmp"], ["-fopenmp"])
        if mode == "1" and not omp:
            raise RuntimeError("FASTXENT_OPENMP=1 but this compiler cannot build OpenMP code")
        if omp:
            print("fastxent: building WITH OpenMP", file=sys.stderr)
        else:
            print("\n" + "!" * 72 + "\nfastxent: building WITHOUT OpenMP: every kernel will "
                  "run on one thread\n" + "!" * 72 + "\n", file=sys.stderr)
        simd = _builds(self.compiler, EMPTY_PROBE, ["-fopenmp-simd"], [])
        common = ["-fopenmp"] if omp else (["-fopenmp-simd"] if simd else [])
        for ext in list(self.extensions):
            isa = ext.name.rsplit("_", 1)[-1]
            isa_flags = ISA_FLAGS.get(isa, [])
            if isa_flags and not _builds(self.compiler, EMPTY_PROBE, isa_flags, []):
                print(f"fastxent: compiler rejects {isa} flags; skipping that kernel set",
                      file=sys.stderr)
                self.extensions.remove(ext)
                continue
            ext.extra_compile_args += common + isa_flags
            ext.extra_link_args += ["-fopenmp"] if omp else []
            # Recorded in the module for fastxent.show_config().
            flags = " ".join(ext.extra_compile_args).replace('"', "")
            ext.define_macros.append(("FASTXENT_CFLAGS", f'"{flags}"'))
        version = _compiler_version(self.compiler)
        self._keys = {ext.name: _cache_key(ext, self.compiler, version)
                      for ext in self.extensions}
        super().build_extensions()


def _extension(isa):
    if POSIX:
        # -fno-math-errno and -fno-trapping-math change no value (NaN and inf keep their meaning);
        # they let GCC call libmvec and if-convert guarded selects in the vector loops. Loop
        # tails stay scalar (no narrower vector epilogue) and nothing is fused implicitly
        # (_loops.h fuses explicitly), so every variant of a loop (loss only, loss and
        # gradient, in place) computes each element the same way.
        opt = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-math-errno", "-fno-trapping-math",
                                           "-ffp-contract=off",
                                           "--param=vect-epilogues-nomask=0"]
        if X86_64:
            # GCC 12 moved SSE2 vector-reduction values through MMX registers without emms,
            # which left the x87 unit unusable (NaN from long double) after a kernel call.
            opt.append("-mno-mmx")
    else:
        opt = ["/O2"]
    return Extension(
        f"fastxent._core._kernels_{isa}",
        [f"fastxent/_core/_kernels_{isa}.pyx"],
        include_dirs=[KERNEL_DIR],
        libraries=["m"] if POSIX else [],  # on glibc, libm.so also pulls in libmvec
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=opt,
    )


directives = dict(language_level=3, boundscheck=DEBUG, wraparound=False, initializedcheck=DEBUG,
                  nonecheck=False, cdivision=True, embedsignature=True)
# fastxent.capi: the C-level API for other Cython code, forwarding to the chosen kernel set.
capi = Extension("fastxent.capi", ["fastxent/capi.pyx"],
                 extra_compile_args=["-O2"] if POSIX else ["/O2"])
setup(
    ext_modules=cythonize([_extension(isa) for isa in _wanted_isas()] + [capi],
                          compiler_directives=directives),
    cmdclass={"build_ext": BuildExt},
)
