-- cli/seed.lua: demo catalog, so every endpoint can be tried at once.
--
--   fcfs -c etc/fcfs.lua run lua/cli/seed.lua [OPENS_IN_SECONDS]
--
-- Creates the NORMAL products below (by name; existing ones are left as they are) and one FLASH
-- product, "선착순 한정판 스니커즈" (100 units, 1 per member), whose sale opens OPENS_IN_SECONDS
-- (default 180) after the run and lasts an hour. Running it again changes nothing while that sale
-- is upcoming or open; once it has ended, it is scheduled again with 100 units. Exit status 0, or
-- 3 on a backend error.
local host = require "host"
local fields = require "lib.fields"
local products = require "products"

local tonumber, tostring = tonumber, tostring

local NORMAL = {
    { "무선 이어폰", "노이즈 캔슬링 블루투스 이어폰", 89000, 50 },
    { "기계식 키보드", "갈축 텐키리스 키보드", 129000, 30 },
    { "텀블러 500ml", "스테인리스 보온 텀블러", 25000, 200 },
    { "백팩", "15인치 노트북 수납 백팩", 59000, 40 },
    { "USB-C 충전기 65W", "GaN 고속 충전기", 39000, 100 },
}
local FLASH = { "선착순 한정판 스니커즈", "하루 한정 100켤레", 99000, 100 }

local function say(...)
    io.stderr:write("seed: ", ...)
    io.stderr:write("\n")
end

local function q(sql, ...)
    local r, err = host.mysql.query(sql, ...)
    if not r then error(tostring(err), 0) end
    return r
end

local function seed(opens_in)
    local created = 0
    for _, p in ipairs(NORMAL) do
        local r = q("INSERT INTO products (name, description, price, type, stock, created_at, updated_at) VALUES "
            .. "(?, ?, ?, 'NORMAL', ?, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3)) ON DUPLICATE KEY UPDATE id = id", p[1], p[2],
            p[3], p[4])
        created = created + r.affected_rows
    end
    local starts = fields.sql_time(host.now() + opens_in)
    local ends = fields.sql_time(host.now() + opens_in + 3600)
    local r = q("INSERT INTO products (name, description, price, type, stock, sale_starts_at, sale_ends_at, "
        .. "per_user_limit, created_at, updated_at) VALUES (?, ?, ?, 'FLASH', ?, ?, ?, 1, UTC_TIMESTAMP(3), "
        .. "UTC_TIMESTAMP(3)) ON DUPLICATE KEY UPDATE id = id", FLASH[1], FLASH[2], FLASH[3], FLASH[4], starts, ends)
    created = created + r.affected_rows
    -- an ended demo sale is scheduled again
    local again = q("UPDATE products SET sale_starts_at = ?, sale_ends_at = ?, stock = ?, updated_at = "
        .. "UTC_TIMESTAMP(3) WHERE name = ? AND type = 'FLASH' AND sale_ends_at <= UTC_TIMESTAMP(3)", starts, ends,
        FLASH[4], FLASH[1])
    local rows = q("SELECT id, sale_starts_at FROM products WHERE name = ?", FLASH[1])
    if rows[1] then products.invalidate({ rows[1].id }) end
    io.stdout:write(("seed: %d product(s) created%s; flash sale of product %s opens at %s UTC\n"):format(created,
        again.affected_rows > 0 and ", flash sale rescheduled" or "", tostring(rows[1] and rows[1].id),
        tostring(rows[1] and rows[1].sale_starts_at)))
end

local ok, err = pcall(seed, tonumber((...)) or 180)
if not ok then
    say(tostring(err))
    return 3
end
return 0
