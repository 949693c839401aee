# cmake -DIN=file -DOUT=file.c [-DNAME=symbol] -P embed.cmake: a C array NAME holding IN's
# bytes, NUL-ended, and NAME_len its length without the NUL (NAME defaults to
# svc_openapi_doc, the first file embedded this way).
if(NOT DEFINED NAME)
  set(NAME svc_openapi_doc)
endif()
file(READ ${IN} hex HEX)
# each byte cast, so UTF-8 text (bytes above 0x7f) fits a plain char array
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "(char)0x\\1," bytes "${hex}")
string(LENGTH "${hex}" n)
math(EXPR n "${n} / 2")
file(WRITE ${OUT} "#include <stddef.h>\nconst char ${NAME}[] = {${bytes}0x00};\nconst size_t ${NAME}_len = ${n};\n")
