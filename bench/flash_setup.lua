-- bench/flash_setup.lua: the data of bench/flash_sale.sh (run with `fcfs run`, not part of the app).
--
--   fcfs -c CONF run bench/flash_setup.lua N UNITS OPENS_IN_SECONDS TOKENS_FILE
--
-- Inserts N verified members directly in MySQL (placeholder sealed fields and password hash: the
-- bench never logs them in) and mints an access token for each with the token key (lib/auth.lua
-- issue: no argon2 in the timed part); writes the tokens, one a line, to TOKENS_FILE; creates a
-- FLASH product of UNITS units, per_user_limit 1, opening OPENS_IN_SECONDS from now and lasting an
-- hour. Prints "product=ID opens_at=EPOCH".
local host = require "host"
local auth = require "lib.auth"
local fields = require "lib.fields"

local n, units, opens_in, out = tonumber((...)), tonumber((select(2, ...))), tonumber((select(3, ...))),
    select(4, ...)
if not (n and units and opens_in and out) then
    io.stderr:write("usage: fcfs -c CONF run bench/flash_setup.lua N UNITS OPENS_IN_SECONDS TOKENS_FILE\n")
    return 2
end

local run = string.format("%x", math.floor(host.now() * 1000))
local first
local BATCH = 500
for i = 1, n, BATCH do
    local values, args = {}, {}
    for j = i, math.min(n, i + BATCH - 1) do
        values[#values + 1] = "(?, 'x', 'x', 'x', 'x', 'x', 'VERIFIED', UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))"
        args[#args + 1] = "bench-" .. run .. "-" .. j
    end
    local r = assert(host.mysql.query("INSERT INTO users (email_blind, email_enc, name_enc, phone_enc, address_enc, "
        .. "password_hash, status, created_at, updated_at) VALUES " .. table.concat(values, ", "), unpack(args)))
    first = first or r.insert_id
end

local f = assert(io.open(out, "w"))
for i = 0, n - 1 do
    f:write((auth.issue(first + i, first + i, "USER")), "\n")
end
f:close()

local opens_at = math.floor(host.now() + opens_in)
local r = assert(host.mysql.query("INSERT INTO products (name, description, price, type, stock, sale_starts_at, "
    .. "sale_ends_at, per_user_limit, created_at, updated_at) VALUES (?, 'bench', 10000, 'FLASH', ?, ?, ?, 1, "
    .. "UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))", "bench flash " .. run, units, fields.sql_time(opens_at),
    fields.sql_time(opens_at + 3600)))
print(string.format("product=%d opens_at=%d", r.insert_id, opens_at))
return 0
