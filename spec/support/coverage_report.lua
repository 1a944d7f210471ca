-- spec/support/coverage_report.lua -- merge the counts of spec/support/coverage.lua and print the
-- line coverage of the repository's lua/, per file and in total.
--
--   luajit spec/support/coverage_report.lua COUNTS_DIR [REPO_ROOT] [MISSED_FILE]
--
-- The executable lines of a file are the lines that carry bytecode in any function of the file
-- (jit.util walks the prototypes of the loaded chunk, so a function never called still counts),
-- less lines that hold only `end` (a function's closing RET, run only when the body falls off
-- its end). Every .lua file under lua/ is listed, loaded or not. With MISSED_FILE, the lines never
-- run are written there as "path: ranges". Exits 1 when there is no count file at all.
local util = require "jit.util"

local dir, root, missed_file = arg[1], arg[2] or ".", arg[3]
assert(dir, "usage: coverage_report.lua COUNTS_DIR [REPO_ROOT] [MISSED_FILE]")

local function lines_of(cmd)
    local p = assert(io.popen(cmd))
    local t = {}
    for l in p:lines() do
        t[#t + 1] = l
    end
    p:close()
    return t
end

local real_root = lines_of("cd '" .. root .. "' && pwd -P")[1]

-- merged counts: path -> { [line] = n }
local hits = {}
local nfiles = 0
for _, f in ipairs(lines_of("find '" .. dir .. "' -name '*.cov' -type f")) do
    nfiles = nfiles + 1
    for l in io.lines(f) do
        local path, line, n = l:match("^(.-)\t(%d+)\t(%d+)$")
        if path then
            local h = hits[path] or {}
            hits[path] = h
            line = tonumber(line)
            h[line] = (h[line] or 0) + tonumber(n)
        end
    end
end
if nfiles == 0 then
    io.stderr:write("coverage_report: no count files in ", dir, "\n")
    os.exit(1)
end

local function executable(path)
    local src = {}
    for l in io.lines(path) do
        src[#src + 1] = l
    end
    local fn = assert(loadfile(path))
    local set = {}
    local function walk(f)
        local info = util.funcinfo(f)
        for pc = 1, info.bytecodes - 1 do
            local l = util.funcinfo(f, pc).currentline
            if l and l > 0 and src[l] and not src[l]:match("^%s*end[%s,;%)]*$") then
                set[l] = true
            end
        end
        for k = -1, -math.huge, -1 do
            local c = util.funck(f, k)
            if c == nil then
                break
            end
            if type(c) == "proto" then
                walk(c)
            end
        end
    end
    walk(fn)
    return set
end

local function ranges(list)
    local out, i = {}, 1
    while i <= #list do
        local j = i
        while j < #list and list[j + 1] == list[j] + 1 do
            j = j + 1
        end
        out[#out + 1] = i == j and tostring(list[i]) or (list[i] .. "-" .. list[j])
        i = j + 1
    end
    return table.concat(out, ",")
end

local files = lines_of("cd '" .. real_root .. "' && find lua -name '*.lua' -type f | sort")
local total, total_hit = 0, 0
local missed = {}
print(string.format("%d count files (one per Lua state) in %s", nfiles, dir))
print(string.format("%-40s %7s %7s %7s", "Lua file", "lines", "run", "cover"))
print(string.rep("-", 64))
for _, rel in ipairs(files) do
    local path = real_root .. "/" .. rel
    local set, h = executable(path), hits[path] or {}
    local n, run, miss = 0, 0, {}
    for l in pairs(set) do
        n = n + 1
        if h[l] then
            run = run + 1
        else
            miss[#miss + 1] = l
        end
    end
    table.sort(miss)
    if #miss > 0 then
        missed[#missed + 1] = rel .. ": " .. ranges(miss)
    end
    total, total_hit = total + n, total_hit + run
    print(string.format("%-40s %7d %7d %6.1f%%", rel, n, run, n > 0 and run * 100 / n or 100))
end
print(string.rep("-", 64))
print(string.format("%-40s %7d %7d %6.1f%%", "TOTAL", total, total_hit, total > 0 and total_hit * 100 / total or 100))
if missed_file then
    local f = assert(io.open(missed_file, "w"))
    f:write(table.concat(missed, "\n"), "\n")
    f:close()
end
