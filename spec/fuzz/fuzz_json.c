/* fuzz_json.c -- libFuzzer target for the JSON body decoder of the Lua side (lua/lib/json.lua).
 *
 * One LuaJIT state loads lib.json (cjson underneath) the way the host does, and
 * spec/fuzz/fuzz_json.lua, whose check(s) raises when json.decode breaks its contract (it never
 * raises; a value, or nil and an error string; what json.encode makes of a value decodes again).
 * A raise aborts (a finding), as do crashes and sanitizer reports. cjson and LuaJIT are not
 * instrumented, so check(s) also returns the features of the outcome (error kind, value types,
 * depths and sizes) as words; each word bumps one of the extra counters libFuzzer reads, which
 * lets the fuzzer keep inputs that reach new kinds of outcome.
 * The state is made once in LLVMFuzzerInitialize and closed at exit; its garbage is collected
 * every 1024 inputs. Run with -detect_leaks=0: LeakSanitizer cannot see pointers held in LuaJIT's
 * own heap, so cjson's buffers would look leaked.
 *
 *   ./build-fuzz/fuzz_json -detect_leaks=0 -max_len=4096 spec/fuzz/corpus/json
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

/* libFuzzer reads these as coverage (how often each word occurred, in its count classes); it
 * clears them before each input. */
#define NCOUNTERS (1 << 14)
__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t counters[NCOUNTERS];

static void count_features(const char *f) {
  while (*f) {
    uint32_t h = 2166136261u; /* FNV-1a of one word */
    for (; *f && *f != ' '; f++) {
      h = (h ^ (uint8_t)*f) * 16777619u;
    }
    if (counters[h % NCOUNTERS] < 255) counters[h % NCOUNTERS]++;
    if (*f == ' ') f++;
  }
}

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
  if (luaL_loadfile(L, FCFS_FUZZ_DIR "/fuzz_json.lua") != 0 || lua_pcall(L, 0, 1, 0) != 0) {
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
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "fuzz_json: %s\n", lua_tostring(L, -1));
    abort();
  }
  const char *f = lua_tostring(L, -1);
  if (f) count_features(f);
  lua_pop(L, 1);
  if (++runs % 1024 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
