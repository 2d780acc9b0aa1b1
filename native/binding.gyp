{
  "targets": [
    {
      "target_name": "berth_native",
      "sources": ["src/berth_native.c", "src/layer_apply.c", "src/layer_source.c", "src/layer_tar.c", "src/layer_error.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-std=c11", "-D_GNU_SOURCE"],
      "configurations": {
        # Built by `make -C build BUILDTYPE=Sanitize` after node-gyp configure; loading
        # it needs LD_PRELOAD=$(gcc -print-file-name=libasan.so) (see native.test.ts).
        "Sanitize": {
          "cflags": ["-g", "-O1", "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"],
          "ldflags": ["-fsanitize=address,undefined"]
        }
      }
    }
  ]
}
