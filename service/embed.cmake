# cmake -DIN=file -DOUT=file.c -P embed.cmake: a C array holding IN's bytes, NUL-ended.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(LENGTH "${hex}" n)
math(EXPR n "${n} / 2")
file(WRITE ${OUT} "#include <stddef.h>\nconst char svc_openapi_doc[] = {${bytes}0x00};\nconst size_t svc_openapi_doc_len = ${n};\n")
