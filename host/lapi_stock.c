/* lapi_stock.c -- host.stock: the node's stock gates (stock.c) in Lua.
 *
 *   host.stock.get(id)            remaining, sold_out, version, paused, age (s since
 *                                 the last update), or nil when the product has no gate
 *   host.stock.sold_out(id)       true iff a gate exists, remaining <= 0, not paused
 *   host.stock.update(id, remaining, version [, paused])
 *                                 true (applied), false (older version: ignored),
 *                                 or nil, "full" | "bad id" | "busy"
 *   host.stock.forget(id)         true when a gate was removed, false when none
 *   host.stock.list()             array of {id =, remaining =, version =, paused =}
 *   host.stock.usage()            gates now, gates at most (stock_slots)
 *
 * Ids are integers > 0 (numeric strings are accepted too). Every function is first bound with the
 * Lua C API; under LuaJIT the chunk below then replaces get, sold_out, update and forget with calls
 * of stock.c's exported functions through the FFI, so the sold-out check compiles to a plain call:
 * no Lua C API call, no allocation (the out-parameters are allocated once per VM).
 *
 * Ownership: the gate is a lightuserdata pointing into the shm segment,
 * which stays mapped for the life of the process (longer than any VM).
 */
#include <lauxlib.h>

#include "lapi.h"
#include "stock.h"

static const char *stock_err(int rc) {
  switch (rc) {
  case FCFS_STOCK_FULL:
    return "full";
  case FCFS_STOCK_BAD_ID:
    return "bad id";
  default:
    return "busy";
  }
}

static void *gate_of(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* A number as an int64, 0 when out of range (a bad id, a NaN). */
static int64_t check_int(lua_State *L, int arg) {
  lua_Number n = luaL_checknumber(L, arg);
  return n > -9.2e18 && n < 9.2e18 ? (int64_t)n : 0;
}

static int64_t check_id(lua_State *L) {
  return check_int(L, 1);
}

static int fail(lua_State *L, int rc) {
  lua_pushnil(L);
  lua_pushstring(L, stock_err(rc));
  return 2;
}

static int stock_get(lua_State *L) {
  int64_t remaining;
  uint64_t version, age_ms;
  int paused;
  int rc = fcfs_stock_get(gate_of(L), check_id(L), &remaining, &version, &paused, &age_ms);
  if (rc == 0) return 0;
  if (rc < 0) return fail(L, rc);
  lua_pushnumber(L, (lua_Number)remaining);
  lua_pushboolean(L, remaining <= 0 && !paused);
  lua_pushnumber(L, (lua_Number)version);
  lua_pushboolean(L, paused);
  lua_pushnumber(L, (lua_Number)age_ms / 1000);
  return 5;
}

static int stock_sold_out(lua_State *L) {
  lua_pushboolean(L, fcfs_stock_sold_out(gate_of(L), check_id(L)));
  return 1;
}

static int stock_update(lua_State *L) {
  int64_t id = check_id(L);
  int64_t remaining = check_int(L, 2);
  lua_Number version = luaL_checknumber(L, 3);
  if (!(version >= 0 && version < 1.8e19)) return luaL_argerror(L, 3, "version must be >= 0");
  int rc = fcfs_stock_update(gate_of(L), id, remaining, (uint64_t)version, lua_toboolean(L, 4));
  if (rc < 0) return fail(L, rc);
  lua_pushboolean(L, rc == FCFS_STOCK_APPLIED);
  return 1;
}

static int stock_forget(lua_State *L) {
  int rc = fcfs_stock_forget(gate_of(L), check_id(L));
  if (rc < 0) return fail(L, rc);
  lua_pushboolean(L, rc);
  return 1;
}

static int stock_list(lua_State *L) {
  void *gate = gate_of(L);
  uint32_t n = fcfs_stock_slots(gate);
  int k = 0;
  lua_newtable(L);
  for (uint32_t i = 0; i < n; i++) {
    int64_t id, remaining;
    uint64_t version;
    int paused;
    if (fcfs_stock_at(gate, i, &id, &remaining, &version, &paused, NULL) != 1) continue;
    lua_createtable(L, 0, 4);
    lua_pushnumber(L, (lua_Number)id);
    lua_setfield(L, -2, "id");
    lua_pushnumber(L, (lua_Number)remaining);
    lua_setfield(L, -2, "remaining");
    lua_pushnumber(L, (lua_Number)version);
    lua_setfield(L, -2, "version");
    lua_pushboolean(L, paused);
    lua_setfield(L, -2, "paused");
    lua_rawseti(L, -2, ++k);
  }
  return 1;
}

static int stock_usage(lua_State *L) {
  uint32_t used, capacity;
  uint64_t deaths;
  fcfs_stock_usage(gate_of(L), &used, &capacity, &deaths);
  lua_pushinteger(L, (lua_Integer)used);
  lua_pushinteger(L, (lua_Integer)capacity);
  return 2;
}

/* Called with (the table of C API functions, the gate); replaces the hot
 * functions with FFI calls. Must match stock.h. */
static const char ffi_chunk[] =
    "local stock, gate = ...\n"
    "local ok, ffi = pcall(require, 'ffi')\n"
    "if not ok then return stock end\n"
    "local tonumber, type = tonumber, type\n"
    "pcall(ffi.cdef, [[\n"
    "int fcfs_stock_get(void *gate, int64_t id, int64_t *remaining, uint64_t *version,\n"
    "                   int *paused, uint64_t *age_ms);\n"
    "int fcfs_stock_sold_out(void *gate, int64_t id);\n"
    "int fcfs_stock_update(void *gate, int64_t id, int64_t remaining, uint64_t version,\n"
    "                      int paused);\n"
    "int fcfs_stock_forget(void *gate, int64_t id);\n"
    "]])\n"
    "local C = ffi.C\n"
    "gate = ffi.cast('void *', gate)\n"
    "local rem, ver, pau, age = ffi.new('int64_t[1]'), ffi.new('uint64_t[1]'),\n"
    "                           ffi.new('int[1]'), ffi.new('uint64_t[1]')\n"
    "local errs = { [-1] = 'full', [-2] = 'busy', [-3] = 'bad id' }\n"
    "local function id_of(id)\n"
    "  if type(id) == 'number' then return id end\n"
    "  local n = tonumber(id)\n"
    "  if n == nil then error('bad argument #1 (id expected, got ' .. type(id) .. ')', 3) end\n"
    "  return n\n"
    "end\n"
    "function stock.get(id)\n"
    "  local rc = C.fcfs_stock_get(gate, id_of(id), rem, ver, pau, age)\n"
    "  if rc ~= 1 then\n"
    "    if rc == 0 then return nil end\n"
    "    return nil, errs[rc]\n"
    "  end\n"
    "  local r, p = tonumber(rem[0]), pau[0] ~= 0\n"
    "  return r, r <= 0 and not p, tonumber(ver[0]), p, tonumber(age[0]) / 1000\n"
    "end\n"
    "function stock.sold_out(id)\n"
    "  return C.fcfs_stock_sold_out(gate, id_of(id)) == 1\n"
    "end\n"
    "function stock.update(id, remaining, version, paused)\n"
    "  if type(remaining) ~= 'number' then error('bad argument #2 (remaining expected)', 2) end\n"
    "  if type(version) ~= 'number' or version < 0 then\n"
    "    error('bad argument #3 (version >= 0 expected)', 2)\n"
    "  end\n"
    "  local rc = C.fcfs_stock_update(gate, id_of(id), remaining, version, paused and 1 or 0)\n"
    "  if rc < 0 then return nil, errs[rc] end\n"
    "  return rc == 1\n"
    "end\n"
    "function stock.forget(id)\n"
    "  local rc = C.fcfs_stock_forget(gate, id_of(id))\n"
    "  if rc < 0 then return nil, errs[rc] end\n"
    "  return rc == 1\n"
    "end\n"
    "return stock\n";

void fcfs_lapi_stock_open(lua_State *L, void *gate) {
  static const luaL_Reg fns[] = {{"get", stock_get},       {"sold_out", stock_sold_out},
                                 {"update", stock_update}, {"forget", stock_forget},
                                 {"list", stock_list},     {"usage", stock_usage}};
  lua_createtable(L, 0, sizeof(fns) / sizeof(fns[0]));
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    lua_pushlightuserdata(L, gate);
    lua_pushcclosure(L, fns[i].func, 1);
    lua_setfield(L, -2, fns[i].name);
  }
  /* LuaJIT: the FFI face; without the ffi module the C API one stays. */
  if (luaL_loadbuffer(L, ffi_chunk, sizeof(ffi_chunk) - 1, "=host.stock") != 0) lua_error(L);
  lua_pushvalue(L, -2);
  lua_pushlightuserdata(L, gate);
  lua_call(L, 2, 1); /* the same table back */
  lua_pop(L, 1);
}
