/* lapi_shared.c -- host.shared: the node's shared dictionaries (shared.c)
 * in Lua, one object per dictionary of the config's shared_dicts.
 *
 *   local d = host.shared.limits
 *   d:get(k)                     value (string, number, boolean) or nil
 *   d:set(k, v [, ttl])          true, or nil, err (v = nil deletes)
 *   d:add(k, v [, ttl])          true, or nil, "exists"
 *   d:incr(k, n [, init [, ttl]]) new value, or nil, "not found" | "not a number"
 *   d:delete(k)                  true
 *   d:ttl(k)                     seconds left (0 = never expires), or nil, "not found"
 *   d:flush_expired([max])       how many expired entries were removed
 *
 * Keys are strings of 1..250 bytes; ttl is in seconds, 0 or absent = no
 * expiry. Every call takes the dictionary's lock once and copies in or out;
 * Lua is never called with the lock held (a Lua error would leave it held),
 * so a string larger than the stack buffer is fetched again into a buffer
 * of the right size.
 *
 * Under LuaJIT, get is an FFI call (ffi_chunk below).
 *
 * Ownership: an object is a userdata holding a pointer into the shm
 * segment, which stays mapped for the life of the process (longer than any
 * VM).
 */
#include <lauxlib.h>
#include <string.h>

#include "lapi.h"
#include "shared.h"

#define DICT_MT "fcfs.shared.dict"

static fcfs_shared_dict_t *check_dict(lua_State *L) {
  return *(fcfs_shared_dict_t **)luaL_checkudata(L, 1, DICT_MT);
}

static int fail(lua_State *L, const char *err) {
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

static double check_ttl(lua_State *L, int arg) {
  double ttl = luaL_optnumber(L, arg, 0);
  if (!(ttl >= 0)) luaL_argerror(L, arg, "ttl must be >= 0 seconds");
  return ttl;
}

static int dict_get(lua_State *L) {
  fcfs_shared_dict_t *d = check_dict(L);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  char stack[1024], *buf = stack;
  size_t cap = sizeof(stack);
  fcfs_shared_value_t v;
  for (;;) {
    const char *err = fcfs_shared_get(d, key, klen, &v, buf, cap);
    if (err) return fail(L, err);
    if (v.type != FCFS_SHARED_STRING || v.str != NULL) break;
    cap = v.len; /* changed meanwhile? then once more */
    buf = lua_newuserdata(L, cap);
  }
  switch (v.type) {
  case FCFS_SHARED_STRING:
    lua_pushlstring(L, v.str, v.len);
    break;
  case FCFS_SHARED_NUMBER:
    lua_pushnumber(L, v.num);
    break;
  case FCFS_SHARED_BOOLEAN:
    lua_pushboolean(L, v.num != 0);
    break;
  default:
    lua_pushnil(L);
  }
  return 1;
}

static int store(lua_State *L, int add) {
  fcfs_shared_dict_t *d = check_dict(L);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  fcfs_shared_value_t v = {FCFS_SHARED_NIL, 0, NULL, 0};
  switch (lua_type(L, 3)) {
  case LUA_TSTRING:
    v.type = FCFS_SHARED_STRING;
    v.str = lua_tolstring(L, 3, &v.len);
    break;
  case LUA_TNUMBER:
    v.type = FCFS_SHARED_NUMBER;
    v.num = lua_tonumber(L, 3);
    break;
  case LUA_TBOOLEAN:
    v.type = FCFS_SHARED_BOOLEAN;
    v.num = lua_toboolean(L, 3);
    break;
  case LUA_TNIL:
  case LUA_TNONE:
    if (add) return fail(L, "bad value type");
    break;
  default:
    return fail(L, "bad value type");
  }
  const char *err = fcfs_shared_set(d, key, klen, &v, check_ttl(L, 4), add, NULL);
  if (err) return fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int dict_set(lua_State *L) {
  return store(L, 0);
}

static int dict_add(lua_State *L) {
  return store(L, 1);
}

static int dict_incr(lua_State *L) {
  fcfs_shared_dict_t *d = check_dict(L);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  double n = luaL_checknumber(L, 3), init = 0, out = 0;
  int has_init = !lua_isnoneornil(L, 4);
  if (has_init) init = luaL_checknumber(L, 4);
  const char *err =
      fcfs_shared_incr(d, key, klen, n, has_init ? &init : NULL, check_ttl(L, 5), &out);
  if (err) return fail(L, err);
  lua_pushnumber(L, out);
  return 1;
}

static int dict_delete(lua_State *L) {
  fcfs_shared_dict_t *d = check_dict(L);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  const char *err = fcfs_shared_delete(d, key, klen);
  if (err && strcmp(err, "not found") != 0) return fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int dict_ttl(lua_State *L) {
  fcfs_shared_dict_t *d = check_dict(L);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  double left = 0;
  const char *err = fcfs_shared_ttl(d, key, klen, &left);
  if (err) return fail(L, err);
  lua_pushnumber(L, left);
  return 1;
}

static int dict_flush_expired(lua_State *L) {
  fcfs_shared_dict_t *d = check_dict(L);
  lua_pushinteger(L, fcfs_shared_flush_expired(d, (int)luaL_optinteger(L, 2, 0)));
  return 1;
}

static int dict_tostring(lua_State *L) {
  lua_pushfstring(L, "host.shared.%s", fcfs_shared_name(check_dict(L)));
  return 1;
}

/* Called with (the methods, name -> dictionary object, name -> its pointer):
 * under LuaJIT, get becomes an FFI call of fcfs_shared_get, so that a
 * compiled trace runs through it (no Lua C API call); a call it cannot
 * answer the same way (not one of these objects, a key that is not a
 * string, a string value longer than its buffer) goes to the C API one.
 * Must match shared.h. */
static const char ffi_chunk[] =
    "local methods, dicts, ptrs = ...\n"
    "local ok, ffi = pcall(require, 'ffi')\n"
    "if not ok then return end\n"
    "local type, pairs = type, pairs\n"
    "pcall(ffi.cdef, [[\n"
    "typedef struct { int type; double num; const char *str; size_t len; } fcfs_shared_value_t;\n"
    "const char *fcfs_shared_get(void *d, const char *key, size_t klen, fcfs_shared_value_t *out,\n"
    "                            char *buf, size_t cap);\n"
    "]])\n"
    "local C, str = ffi.C, ffi.string\n"
    "local CAP = 1024\n"
    "local v, buf = ffi.new('fcfs_shared_value_t[1]'), ffi.new('char[?]', CAP)\n"
    "local at = {}\n"
    "for name, d in pairs(dicts) do at[d] = ffi.cast('void *', ptrs[name]) end\n"
    "local c_get = methods.get\n"
    "function methods.get(d, key)\n"
    "  local p = at[d]\n"
    "  if p == nil or type(key) ~= 'string' then return c_get(d, key) end\n"
    "  local err = C.fcfs_shared_get(p, key, #key, v, buf, CAP)\n"
    "  if err ~= nil then return nil, str(err) end\n"
    "  local t = v[0].type\n"
    "  if t == 0 then return nil end\n"
    "  if t == 2 then return v[0].num end\n"
    "  if t == 3 then return v[0].num ~= 0 end\n"
    "  if v[0].str == nil then return c_get(d, key) end\n"
    "  return str(v[0].str, v[0].len)\n"
    "end\n";

void fcfs_lapi_shared_open(lua_State *L, void *region) {
  static const luaL_Reg methods[] = {{"get", dict_get},
                                     {"set", dict_set},
                                     {"add", dict_add},
                                     {"incr", dict_incr},
                                     {"delete", dict_delete},
                                     {"ttl", dict_ttl},
                                     {"flush_expired", dict_flush_expired},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, DICT_MT)) {
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, dict_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_newtable(L);
  lua_newtable(L); /* name -> pointer, for ffi_chunk */
  fcfs_shared_dict_t *d;
  for (int i = 0; (d = fcfs_shared_at(region, i)) != NULL; i++) {
    *(fcfs_shared_dict_t **)lua_newuserdata(L, sizeof(d)) = d;
    lua_pushvalue(L, -4);
    lua_setmetatable(L, -2);
    lua_setfield(L, -3, fcfs_shared_name(d));
    lua_pushlightuserdata(L, d);
    lua_setfield(L, -2, fcfs_shared_name(d));
  }
  /* metatable, dicts, pointers */
  if (luaL_loadbuffer(L, ffi_chunk, sizeof(ffi_chunk) - 1, "=host.shared") != 0) lua_error(L);
  lua_getfield(L, -4, "__index");
  lua_pushvalue(L, -4);
  lua_pushvalue(L, -4);
  lua_call(L, 3, 0);
  lua_pop(L, 1);     /* the pointers */
  lua_remove(L, -2); /* the metatable */
}
