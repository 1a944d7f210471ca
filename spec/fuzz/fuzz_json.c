/* fuzz_json.c -- libFuzzer target for the JSON body decoder of the Lua side (lua/lib/json.lua).
 *
 * One LuaJIT state loads lib.json (cjson underneath) the way the host
 * does. Each input is handed to json.decode as a Lua string; the contract checked is the one the
 * module documents: it never raises and returns either a value or nil plus a string. A decoded
 * value is encoded again; when json.encode accepts it (it may refuse, e.g. 1e999 decodes to inf),
 * its output must decode. Any violation aborts (a finding), as do crashes and sanitizer reports.
 * The state is made once in LLVMFuzzerInitialize (cjson's buffers live as long as it does) and
 * closed at exit, so LeakSanitizer sees them freed; its garbage is collected every 1024 inputs.
 *
 *   ./build-fuzz/fuzz_json -max_len=4096 spec/fuzz/corpus/json
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) abort();                                                                             \
  } while (0)

/* The Lua side of the check: returns nothing, raises on a contract violation. */
static const char check_src[] =
    "local json = require 'lib.json'\n"
    "return function(s)\n"
    "  local ok, v, err = pcall(json.decode, s)\n"
    "  assert(ok, 'json.decode raised: ' .. tostring(v))\n"
    "  if v == nil then\n"
    "    assert(type(err) == 'string', 'nil without an error string')\n"
    "    return\n"
    "  end\n"
    "  assert(err == nil, 'a value and an error')\n"
    "  local eok, out = pcall(json.encode, v)\n"
    "  if eok then\n"
    "    assert(type(out) == 'string', 'encode returned a non-string')\n"
    "    local again, err2 = json.decode(out)\n"
    "    assert(again ~= nil, 'encode output does not decode: ' .. "
    "tostring(err2) .. ': ' .. out)\n"
    "  end\n"
    "end\n";

static lua_State *L;
static int check_ref;

static void close_state(void) {
  lua_close(L);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  L = luaL_newstate();
  CHECK(L);
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, FCFS_LUA_DIR "/?.lua;" FCFS_LUA_DIR "/?/init.lua");
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  if (luaL_loadstring(L, check_src) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "fuzz_json: %s\n", lua_tostring(L, -1));
    abort();
  }
  CHECK(lua_isfunction(L, -1));
  check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  atexit(close_state);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned runs;
  lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != 0) {
    fprintf(stderr, "fuzz_json: %s\n", lua_tostring(L, -1));
    abort();
  }
  if (++runs % 1024 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
