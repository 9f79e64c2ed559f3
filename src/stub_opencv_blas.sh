#!/usr/bin/env bash
# Replace OpenCV's bundled OpenBLAS (36 MB, plus libgfortran and libquadmath) in a package dir by a
# stub library of the same name, so the video function fits in Lambda's 250 MB.
# cv2 links OpenBLAS only for its matrix algebra (cv::gemm, cv::solve, SVD: the symbols listed
# below); video decoding and colour conversion never call it. Each stub function prints which
# routine was called and aborts, so a future use fails loudly instead of computing garbage.
# Usage: stub_opencv_blas.sh PACKAGE_DIR   (needs gcc and nm)
set -euo pipefail
dir="$1"
libs="$dir/opencv_python_headless.libs"
blas=$(ls "$libs"/libopenblas*.so* 2>/dev/null | head -1)
[ -n "$blas" ] || { echo "no OpenBLAS in $libs: nothing to stub"; exit 0; }
name=$(basename "$blas")
symbols=$(comm -12 <(nm -D --defined-only "$blas" | awk '{print $3}' | sort -u) \
                   <(nm -D --undefined-only "$dir/cv2/cv2.abi3.so" | awk '{print $2}' | sed 's/@.*//' | sort -u))
source=$(mktemp --suffix=.c)
{
  echo '#include <stdio.h>'
  echo '#include <stdlib.h>'
  echo 'static void missing(const char *name) {'
  echo '  fprintf(stderr, "lambdaface: OpenCV called %s, but its BLAS/LAPACK was left out of this package\n", name);'
  echo '  abort();'
  echo '}'
  for s in $symbols; do echo "void $s(void) { missing(\"$s\"); }"; done
} > "$source"
gcc -shared -fPIC -O2 -Wl,-soname,"$name" -o "$blas.stub" "$source"
rm -f "$source"
mv "$blas.stub" "$blas"
# only OpenBLAS needed these
rm -f "$libs"/libgfortran*.so* "$libs"/libquadmath*.so*
echo "stubbed $name ($(echo $symbols | wc -w) routines)"
