# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# deepseek.h — build, test and check.
#
#   make              build/libdeepseek.a, build/libdeepseek.so.X.Y.Z, build/ds, build/ds-server (with libmicrohttpd), examples
#   make test         the whole suite; ends with "N passed, N failed, N skipped"
#   make check        test + amalgamation checks (STYLE.md)
#   make check-layers no file calls into a file later in LIB_SRCS (tools/check_layers)
#   make check-posix  the fallbacks for POSIX systems other than Linux, built and tested here (build-posix/)
#   make check-mingw  dist/deepseek.c compiled and linked for Windows with mingw-w64 (build-mingw/; not run)
#   make amalgamation regenerate dist/deepseek.c
#   make test-python  the Python binding's tests (bindings/python; a venv in build/, pip)
#   make fuzz         build the libFuzzer targets (clang) into build-fuzz/
#   make SAN=1 test   the suite under ASan + UBSan (objects in build-san/)
#   make CUDA=1       also compile and link the CUDA part (nvcc)
#   make OPENSSL=1    AES-256-GCM from OpenSSL's libcrypto (objects in build-openssl/); on AArch64 the
#                     default build already links it and picks it when libsodium lacks AES-GCM there
#   make test-openssl the suite against the OpenSSL build, and the cross-provider test
#   make BLAS=1       large-batch F32/F16 products through OpenBLAS (objects in build-blas/)
#   make tsan         the threaded tests under ThreadSanitizer (clang; build-tsan/)
#   make test-aarch64 the AArch64 cross build's tests under qemu-aarch64 (build-aarch64/)
#   make install      PREFIX=/usr/local DESTDIR=: ds, ds-server, deepseek.h, both libraries, deepseek.pc, man pages
#   make uninstall    the same variables: removes what install put there

CC      ?= cc
NVCC    ?= nvcc
PREFIX  ?= /usr/local
# The first Python that has numpy (tools/find_python.sh: python3 on PATH,
# then Debian's /usr/bin/python3, then other python3.X): the one on PATH may
# be a pyenv or venv one without numpy. Recipes that need numpy start with
# $(NEED_NUMPY), which says what to install when none has it.
ifeq ($(origin PYTHON),undefined)
  PYTHON_FOUND := $(shell sh tools/find_python.sh 2>/dev/null)
  PYTHON := $(or $(PYTHON_FOUND),python3)
  NEED_NUMPY = @sh tools/find_python.sh --check "$(PYTHON_FOUND)"
else
  NEED_NUMPY = @sh tools/find_python.sh --check "$(PYTHON)"
endif
OPT     ?= -O2

# The version is written once, in deepseek.h (DS_VERSION_MAJOR/MINOR/PATCH).
ds_version_part = $(shell sed -n 's/^\#define DS_VERSION_$(1) *\([0-9][0-9]*\).*/\1/p' deepseek.h)
VERSION_MAJOR := $(call ds_version_part,MAJOR)
VERSION_MINOR := $(call ds_version_part,MINOR)
VERSION_PATCH := $(call ds_version_part,PATCH)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)
CFLAGS_BASE = -std=c11 -Wall -Wextra -g $(OPT) -pthread -I.
LDLIBS  = -lsodium -lm -lpthread

ifeq ($(SAN),1)
  BUILD   = build-san
  SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
  BUILD   = build
  SANFLAGS =
endif

# OPENSSL=1: AES-256-GCM from OpenSSL's libcrypto instead of libsodium, which
# stays for BLAKE2b, Argon2id and random bytes (deepseek_impl/crypto.c). The
# objects go to their own directory unless BUILD is given.
# On a CPU other than x86 (the target $(CC) builds for: AArch64), the
# default is both providers, chosen at run time (crypto.c: libsodium where it
# offers AES-256-GCM on the CPU, else OpenSSL), so libcrypto is linked too.
TARGET_MACHINE := $(shell $(CC) -dumpmachine 2>/dev/null)
TARGET_X86 := $(if $(filter x86_64% i386% i486% i586% i686% amd64%,$(TARGET_MACHINE)),1,)
ifeq ($(OPENSSL),1)
  BUILD := $(BUILD)-openssl
  CRYPTO_FLAGS = -DDS_CRYPTO_OPENSSL=1
  LDLIBS += -lcrypto
else ifeq ($(TARGET_X86),)
  CRYPTO_FLAGS =
  LDLIBS += -lcrypto
else
  CRYPTO_FLAGS =
endif

# BLAS=1: prefill products with F32 activations (F32 and F16 weights) of
# enough tokens go through OpenBLAS's cblas_sgemm, single-threaded inside our
# pool (deepseek_impl/cpu.c; needs libopenblas-dev). Without it nothing
# includes or links OpenBLAS. The objects go to their own directory unless
# BUILD is given. pkg-config finds the headers where distributions put them
# (Debian: .../openblas-pthread/); BLAS_CFLAGS and BLAS_LIBS override.
ifeq ($(BLAS),1)
  BUILD := $(BUILD)-blas
  BLAS_CFLAGS ?= $(shell pkg-config --cflags openblas 2>/dev/null)
  BLAS_LIBS ?= $(or $(shell pkg-config --libs openblas 2>/dev/null),-lopenblas)
  BLAS_FLAGS = -DDS_USE_OPENBLAS=1 $(BLAS_CFLAGS)
  LDLIBS += $(BLAS_LIBS)
else
  BLAS_FLAGS =
endif

CFLAGS_ALL = $(CFLAGS_BASE) $(SANFLAGS) $(CRYPTO_FLAGS) $(BLAS_FLAGS) $(CFLAGS)
LDFLAGS_ALL = $(SANFLAGS) $(LDFLAGS)

# The library sources, in amalgamation order (tools/amalgamate reads this
# list), which is the layer order: a file calls only into files above it
# (make check-layers); going up happens only through a function table (the
# device table: cpu.c and cuda.c fill it, forward.c drives it).
LIB_SRCS = \
	deepseek_impl/util.c \
	deepseek_impl/json.c \
	deepseek_impl/safetensors.c \
	deepseek_impl/quant.c \
	deepseek_impl/gguf.c \
	deepseek_impl/crypto.c \
	deepseek_impl/container.c \
	deepseek_impl/config.c \
	deepseek_impl/unicode.c \
	deepseek_impl/regex.c \
	deepseek_impl/tokenizer.c \
	deepseek_impl/chat_template.c \
	deepseek_impl/arch.c \
	deepseek_impl/file.c \
	deepseek_impl/threadpool.c \
	kernels/cpu/ops.c \
	kernels/cpu/ops_avx2.c \
	kernels/cpu/ops_avx512.c \
	kernels/cpu/ops_neon.c \
	deepseek_impl/pager.c \
	deepseek_impl/cpu.c \
	deepseek_impl/cuda.c \
	deepseek_impl/model.c \
	deepseek_impl/lora.c \
	deepseek_impl/forward.c \
	deepseek_impl/sampler.c \
	deepseek_impl/generate.c \
	deepseek_impl/convert.c \
	deepseek_impl/lora_convert.c

LIB_HDRS = deepseek.h deepseek_impl/internal.h deepseek_impl/base.h deepseek_impl/port.h deepseek_impl/format.h deepseek_impl/engine.h \
           kernels/cpu/kernels.h deepseek_impl/unicode_tables.h deepseek_impl/unicode.h \
           deepseek_impl/regex.h deepseek_impl/tokenizer.h
LIB_OBJS = $(LIB_SRCS:%.c=$(BUILD)/%.o)

# The shared library, beside the static one: $(BUILD)/libdeepseek.so.X.Y.Z
# with soname libdeepseek.so.X and the two usual symlinks. Its objects are
# position-independent (their own directory, $(BUILD)/pic/) and built with
# -fvisibility=hidden, so only what deepseek.h marks DS_API (the ds_*
# functions) is exported; the dsi_* functions between files stay inside.
# -z defs: every symbol resolves at link time, so LDLIBS (which deepseek.pc's
# Libs.private repeats) is complete. The sanitizers' runtime is the
# program's, so SAN=1 leaves it out. No CUDA library is linked: the CUDA
# backend is still opened at run time (libdeepseek_cuda.so).
PIC_OBJS = $(LIB_SRCS:%.c=$(BUILD)/pic/%.o)
SHLIB_SONAME = libdeepseek.so.$(VERSION_MAJOR)
SHLIB_REAL = libdeepseek.so.$(VERSION)
SHLIB = $(BUILD)/$(SHLIB_REAL)
SHLIB_LINKS = $(BUILD)/$(SHLIB_SONAME) $(BUILD)/libdeepseek.so
SHLIB_DEFS = $(if $(SANFLAGS),,-Wl,-z,defs)

LDLIBS += -ldl

# CUDA=1 also builds the CUDA backend as its own shared object,
# $(BUILD)/libdeepseek_cuda.so (the kernels, cudart and cuBLAS). The library
# and its programs are the same as without CUDA: they open that object only
# when a model asks for --device cuda (deepseek_impl/cuda.c), so a CPU run
# never maps the CUDA libraries. Programs look for it through their run path
# ($ORIGIN and $ORIGIN/.. in this build, $ORIGIN/../lib where make install
# puts it; libdeepseek.so's own run path has $ORIGIN, its directory), the
# loader's paths, beside themselves, or DS_CUDA_LIBRARY. The CUDA op and forward tests link the
# kernels in (the archive) instead.
ifeq ($(CUDA),1)
  # The toolkit is the one whose nvcc is found (symlinks resolved), else
  # /usr/local/cuda. Override with CUDA_HOME=... or NVCC=/path/to/nvcc.
  NVCC_PATH := $(shell command -v $(NVCC) 2>/dev/null)
  CUDA_HOME ?= $(if $(NVCC_PATH),$(patsubst %/bin/nvcc,%,$(realpath $(NVCC_PATH))),/usr/local/cuda)
  CUDA_LIBDIR ?= $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib) $(CUDA_HOME)/lib64)
  CUDA_SRCS = kernels/cuda/backend.cu kernels/cuda/matmul.cu kernels/cuda/norm.cu kernels/cuda/elementwise.cu \
              kernels/cuda/rope.cu kernels/cuda/attention.cu kernels/cuda/route.cu
  CUDA_HDRS = kernels/cuda/common.cuh kernels/cuda/backend.cuh
  CUDA_TESTS = test_cuda_ops
  CUDA_ARCHIVE = $(BUILD)/libdeepseek_cuda.a
  CUDA_SO = $(BUILD)/libdeepseek_cuda.so
  CUDA_OBJS = $(CUDA_SRCS:%.cu=$(BUILD)/%.o)
  CUDA_LIBS = -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcudart -lcublas -lstdc++
  # A100 (sm_80) and H100/H200 (sm_90) code, plus sm_90 PTX for newer GPUs.
  CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
               -gencode arch=compute_90,code=compute_90
  LDFLAGS_ALL += -Wl,-rpath,'$$ORIGIN' -Wl,-rpath,'$$ORIGIN/..' -Wl,-rpath,'$$ORIGIN/../lib'
else
  CUDA_OBJS =
  CUDA_LIBS =
  CUDA_TESTS =
  CUDA_ARCHIVE =
  CUDA_SO =
endif

# C unit tests: one binary per module.
TESTS = test_jsonmask test_json test_safetensors test_gguf test_config test_quant test_crypto test_container test_convert test_alloc test_forward test_sampler test_stress test_kernels test_tokenizer test_regex test_pager_rss test_demo test_generate test_batch test_lora test_io test_open_io test_cuda_forward test_lora_convert test_prune test_sparse test_experts256 test_plan $(CUDA_TESTS)
TEST_BINS = $(TESTS:%=$(BUILD)/tests/%)

EXAMPLES = $(BUILD)/simple $(BUILD)/chat

# ds-server (tools/server/, an OpenAI-compatible HTTP server) needs
# libmicrohttpd: `all` builds it only where pkg-config finds it.
MHD_CFLAGS := $(shell pkg-config --cflags libmicrohttpd 2>/dev/null)
MHD_LIBS := $(shell pkg-config --libs libmicrohttpd 2>/dev/null)
TOOLS = $(BUILD)/ds
ifneq ($(shell pkg-config --exists libmicrohttpd 2>/dev/null && echo yes),)
  TOOLS += $(BUILD)/ds-server
endif

.PHONY: all shared test check amalgamation fuzz install uninstall clean testdata demo demo-random test-openssl tsan test-cuda-emu test-aarch64
all: $(BUILD)/libdeepseek.a shared $(TOOLS) $(EXAMPLES) $(CUDA_SO)
shared: $(SHLIB) $(SHLIB_LINKS)

$(BUILD)/%.o: %.c $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/pic/%.o: %.c $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fPIC -fvisibility=hidden -c $< -o $@

$(SHLIB): $(PIC_OBJS)
	$(CC) -shared -Wl,-soname,$(SHLIB_SONAME) $(SHLIB_DEFS) $(LDFLAGS_ALL) $^ -o $@ $(LDLIBS)
$(BUILD)/$(SHLIB_SONAME): $(SHLIB)
	ln -sf $(SHLIB_REAL) $@
$(BUILD)/libdeepseek.so: $(BUILD)/$(SHLIB_SONAME)
	ln -sf $(SHLIB_SONAME) $@

$(BUILD)/kernels/cuda/%.o: kernels/cuda/%.cu $(LIB_HDRS) $(CUDA_HDRS)
	@mkdir -p $(dir $@)
	$(NVCC) -O2 -I. $(CUDA_ARCH) -Xcompiler -Wall,-Wextra,-fPIC -c $< -o $@

$(BUILD)/libdeepseek.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

# The CUDA backend, loaded at run time (cudart linked in statically).
$(BUILD)/libdeepseek_cuda.so: $(CUDA_OBJS)
	$(NVCC) -shared $(CUDA_ARCH) $^ -o $@ -L$(CUDA_LIBDIR) -Xlinker -rpath,$(CUDA_LIBDIR) -lcublas

# tools/cli.c: the command-line plumbing ds and ds-server share.
# ds chat edits lines with libedit (Debian: libedit-dev) where pkg-config
# finds it, unless EDIT=0; without it, plain reads.
ifneq ($(EDIT),0)
  EDIT_LIBS := $(shell pkg-config --libs libedit 2>/dev/null)
endif
ifneq ($(EDIT_LIBS),)
  EDIT_FLAGS := -DDS_HAVE_LIBEDIT=1 $(shell pkg-config --cflags libedit 2>/dev/null)
endif
DS_SRCS = tools/ds.c tools/ds_bench.c tools/ds_lora.c tools/cli.c tools/chat_file.c tools/server/json.c
$(BUILD)/ds: $(DS_SRCS) tools/cli.h tools/chat_file.h tools/server/json.h $(BUILD)/libdeepseek.a
	$(CC) $(CFLAGS_ALL) $(EDIT_FLAGS) $(DS_SRCS) -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) $(EDIT_LIBS) $(LDLIBS)

$(BUILD)/simple: examples/simple.c $(BUILD)/libdeepseek.a
	$(CC) $(CFLAGS_ALL) $< -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) $(LDLIBS)
$(BUILD)/chat: examples/chat.c $(BUILD)/libdeepseek.a
	$(CC) $(CFLAGS_ALL) $< -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) $(LDLIBS)

SERVER_SRCS = tools/server/server.c tools/server/json.c tools/server/keys.c tools/server/jsonmask.c tools/server/logits.c tools/cli.c
$(BUILD)/ds-server: $(SERVER_SRCS) tools/server/json.h tools/server/keys.h tools/server/jsonmask.h tools/server/logits.h tools/cli.h $(BUILD)/libdeepseek.a
	$(CC) $(CFLAGS_ALL) $(MHD_CFLAGS) $(SERVER_SRCS) -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) $(MHD_LIBS) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/test.h tests/fail_alloc.h $(BUILD)/libdeepseek.a $(CUDA_SO)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) $(LDLIBS)

# The JSON-output mask of ds-server, with the server's JSON parser as its reference.
$(BUILD)/tests/test_jsonmask: tests/test_jsonmask.c tests/test.h tools/server/jsonmask.c tools/server/jsonmask.h tools/server/json.c tools/server/json.h $(BUILD)/libdeepseek.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< tools/server/jsonmask.c tools/server/json.c -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) $(LDLIBS)

# The CUDA op tests also depend on the C face of the backend.
$(BUILD)/tests/test_cuda_ops: tests/test_cuda_ops.c tests/test.h $(CUDA_HDRS) $(BUILD)/libdeepseek.a $(CUDA_ARCHIVE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ $(BUILD)/libdeepseek.a $(CUDA_ARCHIVE) $(LDFLAGS_ALL) $(LDLIBS) $(CUDA_LIBS)

# Generated test checkpoints and containers (tests/gen/make_checkpoint.py), and
# PEFT LoRA adapters over them (tests/gen/make_peft.py).
TESTDATA = $(BUILD)/testdata/.stamp
$(TESTDATA): tests/gen/make_checkpoint.py tests/gen/make_peft.py tests/gen/prune_ref.py
	$(NEED_NUMPY)
	@mkdir -p $(BUILD)/testdata
	$(PYTHON) tests/gen/make_checkpoint.py --all $(BUILD)/testdata
	$(PYTHON) tests/gen/make_checkpoint.py --family pager $(BUILD)/testdata/pager
	$(PYTHON) tests/gen/make_peft.py $(BUILD)/testdata $(BUILD)/testdata/peft
	$(PYTHON) tests/gen/prune_ref.py $(BUILD)/testdata/v2lite $(BUILD)/testdata/prune/v2lite_r30 --ratio 0.3
	$(PYTHON) tests/gen/prune_ref.py $(BUILD)/testdata/v2lite $(BUILD)/testdata/prune/v2lite_24 --nm 2:4
	$(PYTHON) tests/gen/prune_ref.py $(BUILD)/testdata/v3 $(BUILD)/testdata/prune/v3_r50_experts --ratio 0.5 --only experts
	$(PYTHON) tests/gen/prune_ref.py $(BUILD)/testdata/moe16b $(BUILD)/testdata/prune/moe16b_48_core --nm 4:8 --only core
	$(PYTHON) tests/gen/prune_ref.py $(BUILD)/testdata/v2 $(BUILD)/testdata/prune/v2_r10 --ratio 0.1
	@touch $@
testdata: $(TESTDATA)

# A venv with the gguf package (and the system's numpy) for tests/test_gguf.sh,
# which writes GGUF files with it; without one that test reports skipped.
.PHONY: gguf-venv
gguf-venv: $(BUILD)/gguf-venv/.done
$(BUILD)/gguf-venv/.done:
	$(PYTHON) -m venv --system-site-packages $(BUILD)/gguf-venv
	$(BUILD)/gguf-venv/bin/python -m pip install -q gguf
	$(BUILD)/gguf-venv/bin/python -c 'import gguf, numpy'
	touch $@

# test tries to make the gguf venv (pip, so it needs the network once); where
# it cannot, tests/test_gguf.sh says it skipped.
test: all $(TEST_BINS) $(TESTDATA)
	@[ -f $(BUILD)/gguf-venv/.done ] || $(MAKE) --no-print-directory gguf-venv >/dev/null 2>&1 || \
		echo "note: no gguf package could be installed into $(BUILD)/gguf-venv (offline?): the GGUF import tests will skip"
	@BUILD=$(BUILD) PYTHON=$(PYTHON) sh tests/run_tests.sh $(TEST_BINS) tests/test_cli.sh tests/test_lora_cli.sh tests/test_drop_experts.sh tests/test_plan.sh tests/test_gguf.sh tests/test_crypto_cross.sh tests/server/run.sh tests/test_docs.sh

# The CUDA sources on the CPU: tools/cuda_emu runs every kernel with one OS
# thread per CUDA thread (ASan + UBSan), so the op tests and the device forward
# pass run on a machine without a GPU (slow: minutes; not part of make test).
# CUDA_EMU_TOKENS and CUDA_EMU_FAMILIES bound the forward test's work.
CUDA_EMU_TOKENS ?= 8
CUDA_EMU_FAMILIES ?= v2lite,v2,v3,moe16b,yarn
test-cuda-emu: $(TESTDATA)
	sh tools/cuda_emu/build.sh $(BUILD)/cuda-emu test_cuda_ops test_cuda_forward
	@BUILD=$(BUILD) DS_CUDA_FWD_TOKENS=$(CUDA_EMU_TOKENS) DS_CUDA_FWD_FAMILIES=$(CUDA_EMU_FAMILIES) \
		sh tests/run_tests.sh $(BUILD)/cuda-emu/test_cuda_ops $(BUILD)/cuda-emu/test_cuda_forward

# The OpenSSL provider: the whole suite against it, then the cross-provider
# test (files sealed by either build open with the other; identical chunk
# bytes). Needs libssl-dev. Objects in $(BUILD)-openssl.
OSSL_BUILD = $(BUILD)-openssl
test-openssl: all $(BUILD)/tests/test_crypto $(TESTDATA)
	$(MAKE) OPENSSL=1 BUILD=$(OSSL_BUILD) all $(TESTS:%=$(OSSL_BUILD)/tests/%)
	@BUILD=$(OSSL_BUILD) DS_TESTDATA=$(BUILD)/testdata DS_A=$(BUILD)/ds DS_B=$(OSSL_BUILD)/ds \
		TC_A=$(BUILD)/tests/test_crypto TC_B=$(OSSL_BUILD)/tests/test_crypto \
		sh tests/run_tests.sh $(TESTS:%=$(OSSL_BUILD)/tests/%) tests/test_cli.sh tests/test_crypto_cross.sh

# AArch64 under emulation: the library, ds and the C tests cross-built with
# AARCH64_CC (Debian: gcc-aarch64-linux-gnu, with libsodium-dev:arm64 and
# libssl-dev:arm64 through multiarch) into $(BUILD)-aarch64, and run under
# qemu-user with every extension the kernels and the crypto use (-cpu max:
# NEON, dot product, i8mm, AES + PMULL), against the x86 build's test data.
# The programs run on the multiarch arm64 C library (libc6:arm64, pulled in
# by libsodium-dev:arm64), found through /lib/ld-linux-aarch64.so.1: do not
# point QEMU_LD_PREFIX at the cross compiler's copy (/usr/aarch64-linux-gnu),
# whose loader is another Debian revision than that libc.so.6 (2.36-8 against
# 2.36-9 here) and hangs the first pthread_create in glibc's stack cache.
# tests/test_aarch64.sh then seals and opens models across the two builds.
# AARCH64_TESTS is what runs emulated: every C test but test_alloc and
# test_pager_rss, which check what the kernel did with madvise (VmFlags,
# AnonHugePages) and re-execute themselves through /proc/self/exe, neither
# of which qemu-user passes through. About 7 minutes on 2 cores.
# AARCH64_PAGE_TESTS run a second time with 64 KiB pages (qemu -p 65536, as
# RHEL and some Ampere kernels use): the file reads, the resident segments'
# rounding, the memory plan and the expert pager on a page larger than 4 KiB.
AARCH64_CC ?= aarch64-linux-gnu-gcc
AARCH64_QEMU ?= qemu-aarch64 -cpu max
AARCH64_BUILD = $(BUILD)-aarch64
AARCH64_TESTS ?= $(filter-out test_alloc test_pager_rss,$(TESTS))
AARCH64_PAGE_TESTS ?= test_container test_open_io test_plan test_experts256
test-aarch64: $(TESTDATA) $(BUILD)/ds
	$(MAKE) --no-print-directory CC=$(AARCH64_CC) BUILD=$(AARCH64_BUILD) EDIT=0 OPT="$(OPT)" \
		$(AARCH64_BUILD)/ds $(AARCH64_TESTS:%=$(AARCH64_BUILD)/tests/%)
	@DS_TEST_RUNNER="$(AARCH64_QEMU)" BUILD=$(AARCH64_BUILD) \
		DS_TESTDATA=$(BUILD)/testdata DS_X86=$(BUILD)/ds DS_ARM=$(AARCH64_BUILD)/ds PYTHON=$(PYTHON) \
		sh tests/run_tests.sh $(AARCH64_TESTS:%=$(AARCH64_BUILD)/tests/%) tests/test_aarch64.sh
	@echo "== the same build with 64 KiB pages: $(AARCH64_PAGE_TESTS)"
	@DS_TEST_RUNNER="$(AARCH64_QEMU) -p 65536" BUILD=$(AARCH64_BUILD) DS_TESTDATA=$(BUILD)/testdata \
		sh tests/run_tests.sh $(AARCH64_PAGE_TESTS:%=$(AARCH64_BUILD)/tests/%)

# ThreadSanitizer: the threaded tests built from every library source with
# clang -fsanitize=thread (libsodium and libcrypto are not instrumented). A
# race makes the binary exit 66 after its RESULT line, which fails the run.
TSAN_CC ?= clang
TSAN_BUILD = $(BUILD)-tsan
TSAN_TESTS = test_stress test_forward
TSAN_FLAGS = -std=c11 -Wall -Wextra -g -O1 -pthread -I. -fsanitize=thread $(CRYPTO_FLAGS)
tsan: $(TSAN_TESTS:%=$(TSAN_BUILD)/%) $(TESTDATA)
	@BUILD=$(BUILD) TSAN_OPTIONS="second_deadlock_stack=1 $(TSAN_OPTIONS)" sh tests/run_tests.sh $(TSAN_TESTS:%=$(TSAN_BUILD)/%)
$(TSAN_BUILD)/%: tests/%.c tests/test.h tests/fail_alloc.h $(LIB_SRCS) $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(TSAN_CC) $(TSAN_FLAGS) $< $(LIB_SRCS) -o $@ $(LDLIBS)

# Benchmarks (figures, not tests).
# The expert-pager sweep: ~2 min to generate and convert, 5-15 min of sweeps, ~10 GB of disk.
.PHONY: bench-pager
bench-pager: $(BUILD)/ds
	DS=$(BUILD)/ds PYTHON=$(PYTHON) sh bench/run_pager_bench.sh $(BUILD)/bench-pager
# Us against llama.cpp on identical weights (bench/README-compare.md): installs
# llama-cpp-python into a venv (30-60 min the first time), ~30 GB of disk.
# BENCH_ARGS=--quick tests the script; results in $(BUILD)/bench-compare/.
.PHONY: bench
bench: $(BUILD)/ds $(BUILD)/libdeepseek.a
	DS=$(BUILD)/ds PYTHON=$(PYTHON) CC=$(CC) sh bench/compare_llamacpp.sh $(BUILD)/bench-compare $(BENCH_ARGS)

$(BUILD)/bench_container: tests/bench/bench_container.c $(BUILD)/libdeepseek.a
	$(CC) $(CFLAGS_ALL) $< -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) $(LDLIBS)
# Our prefill products against OpenBLAS SGEMM, one thread (needs libopenblas-dev).
$(BUILD)/bench_gemm: tests/bench/bench_gemm.c $(BUILD)/libdeepseek.a
	$(CC) $(CFLAGS_ALL) $< -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) -lopenblas $(LDLIBS)
# The decode row products streaming a large matrix against plain reads.
$(BUILD)/bench_gemv: tests/bench/bench_gemv.c $(BUILD)/libdeepseek.a
	$(CC) $(CFLAGS_ALL) $< -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) $(LDLIBS)
# The decode product of pruned Q8_0 weights (Q8_0_24, Q8_0_SP) against Q8_0.
$(BUILD)/bench_pruned: tests/bench/bench_pruned.c $(BUILD)/libdeepseek.a
	$(CC) $(CFLAGS_ALL) $< -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) $(LDLIBS)
# Decode throughput against the sequences sharing a pass (continuous batching).
$(BUILD)/bench_batch: tests/bench/bench_batch.c $(BUILD)/libdeepseek.a
	$(CC) $(CFLAGS_ALL) $< -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) $(LDLIBS)
# What LoRA adapters cost: decode time against the base (paired), memory per adapter.
$(BUILD)/bench_lora: tests/bench/bench_lora.c $(BUILD)/libdeepseek.a
	$(CC) $(CFLAGS_ALL) $< -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) $(LDLIBS)
# The AArch64 kernel sets against the portable one (instruction counts under
# qemu: bench/neon_insns.py; build it with CC=aarch64-linux-gnu-gcc
# LDFLAGS="-no-pie -static").
$(BUILD)/bench_neon: tests/bench/bench_neon.c $(BUILD)/libdeepseek.a
	$(CC) $(CFLAGS_ALL) $< -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) $(LDLIBS)
$(BUILD)/bench_crypto: tests/bench/bench_crypto.c $(BUILD)/libdeepseek.a
	$(CC) $(CFLAGS_ALL) $< -o $@ $(BUILD)/libdeepseek.a $(LDFLAGS_ALL) $(LDLIBS)

# The main job: the trained demo model (models/, a 3 MB sealed DeepSeek-V2-
# architecture MoE trained on the King James Bible, tools/train/) writes text.
# The key is a published demo key (models/README.md). Greedy parity of this
# file with PyTorch is tests/test_demo.c.
DEMO_PROMPT ?= In the beginning
demo: all
	$(BUILD)/ds inspect models/demo.dsm
	$(BUILD)/ds verify models/demo.dsm --key-file models/demo.key
	$(BUILD)/ds run models/demo.dsm --key-file models/demo.key -p "$(DEMO_PROMPT)" -n 96 \
		--temp 0.6 --top-p 0.9 --repeat-penalty 1.15 --seed 1
	@echo "== the same model with its sealed domain adapter (models/demo-lora.dsa: the Jargon File)"
	$(BUILD)/ds run models/demo.dsm --key-file models/demo.key --lora models/demo-lora.dsa \
		-p "A hacker is a person who" -n 48 --temp 0.6 --top-p 0.9 --repeat-penalty 1.15 --seed 1234

# The same pipeline on a random V2-Lite-shaped checkpoint: generate, seal with
# a fresh key, inspect, verify, generate (random weights: the text is noise).
DEMO = $(BUILD)/demo
demo-random: all
	$(NEED_NUMPY)
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(PYTHON) tests/gen/make_checkpoint.py --family v2lite $(DEMO)/hf
	$(BUILD)/ds keygen $(DEMO)/demo.key
	$(BUILD)/ds convert $(DEMO)/hf $(DEMO)/model.dsm --quant q8 --key-file $(DEMO)/demo.key
	$(BUILD)/ds inspect $(DEMO)/model.dsm --key-file $(DEMO)/demo.key | head -n 40
	$(BUILD)/ds verify $(DEMO)/model.dsm --key-file $(DEMO)/demo.key
	$(BUILD)/ds run $(DEMO)/model.dsm --key-file $(DEMO)/demo.key -p "Explain MoE routing." -n 48 --temp 0.8 --seed 1

# The Python binding (bindings/python): a virtual environment in
# $(BUILD)/python-venv with pytest (pip fetches it the first time) and the
# package (built from dist/deepseek.c), then its tests against $(BUILD)/ds.
# Not part of `make test`: it needs pip.
PY_VENV = $(BUILD)/python-venv
.PHONY: test-python
test-python: $(BUILD)/ds dist/deepseek.c
	@test -x $(PY_VENV)/bin/pytest || { $(PYTHON) -m venv $(PY_VENV) && $(PY_VENV)/bin/pip install -q pytest; }
	$(PY_VENV)/bin/pip install -q --force-reinstall --no-deps ./bindings/python
	DS=$(BUILD)/ds $(PY_VENV)/bin/python -m pytest -q -p no:cacheprovider bindings/python/tests

# ---- amalgamation --------------------------------------------------------
# dist/deepseek.c is generated but committed: vendoring users take it with
# deepseek.h. `make check` fails when it is stale (tools/check_amalgamation.sh).
AMALG_BUILD = $(BUILD)/amalg
AMALG_TEST_BINS = $(TESTS:%=$(AMALG_BUILD)/tests/%)
AMALG_DEPS = $(LIB_SRCS) $(LIB_HDRS) $(wildcard deepseek_impl/*.h kernels/cpu/*.h) tools/amalgamate

.PHONY: test-amalg amalgamation-sources
amalgamation: dist/deepseek.c
dist/deepseek.c: $(AMALG_DEPS) Makefile
	$(PYTHON) tools/amalgamate --out $@ $(LIB_SRCS)

# The unit tests call dsi_* functions, which are static in the amalgamation,
# so each test is one translation unit: dist/deepseek.c, then the test
# (tests/amalg_unit.c). Same test data as `make test`.
$(AMALG_BUILD)/tests/%: tests/%.c tests/amalg_unit.c tests/test.h tests/fail_alloc.h dist/deepseek.c deepseek.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DTEST_SOURCE='"$*.c"' tests/amalg_unit.c -o $@ $(LDFLAGS_ALL) $(LDLIBS)

$(AMALG_BUILD)/tests/test_jsonmask: tests/test_jsonmask.c tests/amalg_unit.c tests/test.h dist/deepseek.c deepseek.h tools/server/jsonmask.c tools/server/json.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DTEST_SOURCE='"test_jsonmask.c"' tests/amalg_unit.c tools/server/jsonmask.c tools/server/json.c -o $@ $(LDFLAGS_ALL) $(LDLIBS)

# The CUDA objects as an archive, so that a test links (and loads cuBLAS
# for) only what it calls.
$(BUILD)/libdeepseek_cuda.a: $(CUDA_OBJS)
	@rm -f $@
	ar rcs $@ $^

test-amalg: $(AMALG_TEST_BINS) $(TESTDATA)
	@BUILD=$(BUILD) sh tests/run_tests.sh $(AMALG_TEST_BINS)

amalgamation-sources:
	@echo $(LIB_SRCS)

# tests/test_install.sh: make install into a staging root, programs built
# with pkg-config against both libraries, make uninstall. tests/test_find_python.sh:
# the Python choice with a python3 without numpy first on PATH.
# tools/check_spdx.sh: every source carries the licence lines.
check: test
	@BUILD=$(BUILD) CC="$(CC)" APP_CFLAGS="$(SANFLAGS)" MAKE="$(MAKE)" \
		sh tests/run_tests.sh tests/test_install.sh tests/test_find_python.sh
	@sh tools/check_spdx.sh
	@$(PYTHON) tools/check_layers --build $(BUILD) $(LIB_SRCS)
	@CC="$(CC)" CXX="$(CXX)" PYTHON="$(PYTHON)" BUILD="$(BUILD)" LIB_SRCS="$(LIB_SRCS)" \
		sh tools/check_amalgamation.sh

# Layers call only down (STYLE.md): a library source never references a
# symbol defined in a source after it in LIB_SRCS; going up is only through a
# function table. nm on the objects of `all`; --graph prints the file graph.
.PHONY: check-layers
check-layers: $(LIB_OBJS)
	@$(PYTHON) tools/check_layers --build $(BUILD) $(LIB_SRCS)

# Portability (docs/platforms.md; deepseek_impl/port.h).
# check-posix: the library built as for a POSIX system other than Linux
# (macOS, FreeBSD): DSI_PORTABLE and __linux__ undefined turn every
# Linux-only call into its fallback (no posix_fadvise, MADV_*, preadv,
# /proc); the library's objects go to build-posix/ and a few tests run
# against them with this build's test data. dist/deepseek.c (regenerated
# first when stale, as for test-amalg) is compiled the same way (warnings fail).
# check-mingw: dist/deepseek.c compiled (no warnings) and examples/simple.c
# linked for Windows with mingw-w64 (tools/check_mingw.sh); not run.
POSIX_BUILD = build-posix
POSIX_FLAGS = -DDSI_PORTABLE -U__linux__ -U__linux -Ulinux -U__gnu_linux__
POSIX_TESTS = test_container test_open_io test_io test_pager_rss test_forward test_convert test_crypto test_alloc \
              test_lora_convert
.PHONY: check-posix check-mingw
check-posix: $(TESTDATA) dist/deepseek.c
	$(MAKE) BUILD=$(POSIX_BUILD) CFLAGS='$(CFLAGS) $(POSIX_FLAGS)' $(POSIX_TESTS:%=$(POSIX_BUILD)/tests/%)
	$(CC) $(CFLAGS_ALL) $(POSIX_FLAGS) -Werror -c dist/deepseek.c -o $(POSIX_BUILD)/deepseek_amalg.o
	@BUILD=$(BUILD) DS_TESTDATA=$(BUILD)/testdata sh tests/run_tests.sh $(POSIX_TESTS:%=$(POSIX_BUILD)/tests/%)
check-mingw: dist/deepseek.c
	@sh tools/check_mingw.sh build-mingw

# ---- fuzzing (clang + libFuzzer) -----------------------------------------
FUZZ_CC ?= clang
FUZZ_TARGETS = fuzz_json fuzz_safetensors fuzz_container fuzz_tokenizer fuzz_regex fuzz_chat_file fuzz_gguf fuzz_keys fuzz_jsonmask
FUZZ_FLAGS = -std=c11 -g -O1 -I. -fsanitize=fuzzer,address,undefined -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION=1
fuzz: $(FUZZ_TARGETS:%=build-fuzz/%)
build-fuzz/%: tests/fuzz/%.c $(LIB_SRCS) $(LIB_HDRS)
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) $< $(LIB_SRCS) -o $@ $(LDLIBS)
# ds chat's conversation files: the tools' parser, not the library's
build-fuzz/fuzz_chat_file: tests/fuzz/fuzz_chat_file.c tools/chat_file.c tools/chat_file.h tools/server/json.c tools/server/json.h
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) $< tools/chat_file.c tools/server/json.c -o $@ -lm
# ds-server's --keys-file parser
build-fuzz/fuzz_keys: tests/fuzz/fuzz_keys.c tools/server/keys.c tools/server/keys.h
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) $< tools/server/keys.c -o $@ -lsodium -lm -lpthread
# ds-server's JSON-output validator, against the server's strict parser
build-fuzz/fuzz_jsonmask: tests/fuzz/fuzz_jsonmask.c tools/server/jsonmask.c tools/server/jsonmask.h tools/server/json.c tools/server/json.h $(LIB_SRCS) $(LIB_HDRS)
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) $< tools/server/jsonmask.c tools/server/json.c $(LIB_SRCS) -o $@ $(LDLIBS)

# ---- install ----------------------------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=staging root]: the programs of
# `all` (ds, and ds-server where it was built), deepseek.h, both libraries
# (the shared one with its symlinks; the CUDA backend in a CUDA=1 build),
# deepseek.pc, and the man pages under man/. ldconfig runs only for a real
# install as root. `make uninstall` with the same variables removes those
# files (directories stay: they may hold others' files).
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANPAGES = ds.1 ds-server.1
# deepseek.pc names its directories through ${prefix} where they lie under
# it, so pkg-config --define-prefix (or --define-variable=prefix=) can move it.
pc_path = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))
LDCONFIG = if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" -eq 0 ]; then PATH="$$PATH:/sbin:/usr/sbin" ldconfig; fi

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 755 $(TOOLS) $(DESTDIR)$(BINDIR)/
	install -m 644 deepseek.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(BUILD)/libdeepseek.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHLIB) $(DESTDIR)$(LIBDIR)/
	ln -sf $(SHLIB_REAL) $(DESTDIR)$(LIBDIR)/$(SHLIB_SONAME)
	ln -sf $(SHLIB_SONAME) $(DESTDIR)$(LIBDIR)/libdeepseek.so
	$(if $(CUDA_SO),install -m 755 $(CUDA_SO) $(DESTDIR)$(LIBDIR)/)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(call pc_path,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(call pc_path,$(INCLUDEDIR))|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@LIBS_PRIVATE@|$(strip $(LDLIBS))|' deepseek.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/deepseek.pc
	@for m in $(MANPAGES); do \
	    if [ -f man/$$m ]; then \
	        echo "install -m 644 man/$$m $(DESTDIR)$(MANDIR)/man1/"; \
	        install -d $(DESTDIR)$(MANDIR)/man1 && install -m 644 man/$$m $(DESTDIR)$(MANDIR)/man1/ || exit 1; \
	    fi; \
	done
	@$(LDCONFIG)

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/ds $(DESTDIR)$(BINDIR)/ds-server $(DESTDIR)$(INCLUDEDIR)/deepseek.h \
	    $(DESTDIR)$(LIBDIR)/libdeepseek.a $(DESTDIR)$(LIBDIR)/$(SHLIB_REAL) $(DESTDIR)$(LIBDIR)/$(SHLIB_SONAME) \
	    $(DESTDIR)$(LIBDIR)/libdeepseek.so $(DESTDIR)$(LIBDIR)/libdeepseek_cuda.so $(DESTDIR)$(PKGCONFIGDIR)/deepseek.pc \
	    $(MANPAGES:%=$(DESTDIR)$(MANDIR)/man1/%)
	@$(LDCONFIG)

clean:
	rm -rf build build-san build-fuzz build-openssl build-san-openssl build-tsan build-openssl-tsan build-blas
