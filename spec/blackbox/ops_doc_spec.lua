-- docs/operations.md's metrics table against a live node: every metric the node exposes on /metrics
-- has a row, and every row names a metric the node exposes (the repository's app, 1 worker, a
-- shared dictionary and a stock gate, so that every family shows up).
local shop = require "spec.support.shop"
local server = require "spec.support.server"
local http = require "spec.support.http"

local function doc_metrics()
    local f = assert(io.open(server.root .. "/docs/operations.md"))
    local doc = f:read("*a")
    f:close()
    local section = assert(doc:match("\n## Metrics and what to alert on\n(.-)\n## "), "no metrics section")
    local names = {}
    for name in section:gmatch("\n| `([%w_]+)` |") do names[name] = true end
    return names
end

-- Metric families of the Prometheus text: TYPE lines and samples (histogram series folded).
local function exposed(text)
    local names, histograms = {}, {}
    for name, kind in text:gmatch("# TYPE ([%w_]+) (%w+)") do
        names[name] = true
        if kind == "histogram" then histograms[name] = true end
    end
    for line in text:gmatch("[^\n]+") do
        local name = line:match("^([%w_]+)[{ ]")
        if name then
            local base = name:match("^(.-)_bucket$") or name:match("^(.-)_sum$") or name:match("^(.-)_count$")
            names[base and histograms[base] and base or name] = true
        end
    end
    return names
end

describe("docs/operations.md metrics", function()
    local env

    lazy_setup(function()
        env = shop.setup("fcfs_ops_doc_spec", { workers = 1 }, { flash_sweep_interval = 1 })
    end)

    lazy_teardown(function()
        if env then env:teardown() end
    end)

    it("lists exactly the metrics a node exposes", function()
        local admin = env:member("admin", "ADMIN")
        local res = env:call("POST", "/api/products", { token = admin.token, json = { name = "지표 " .. env.run,
            price = 10, type = "FLASH", stock = 1, sale_starts_at = "2030-01-01T00:00:00+09:00",
            sale_ends_at = "2030-01-02T00:00:00+09:00", per_user_limit = 1 } })
        assert.equal(201, res.status, res.body)
        assert.equal(200, http.request { port = env.s.port, path = "/api/flash/products/" .. res.json.id }.status)
        local live, doc = exposed(env.s:metrics()), doc_metrics()
        for name in pairs(live) do
            assert.is_true(doc[name] == true, name .. " is exposed but not in docs/operations.md")
        end
        for name in pairs(doc) do
            assert.is_true(live[name] == true, name .. " is in docs/operations.md but not exposed")
        end
    end)
end)
