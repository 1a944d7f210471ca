-- The storefront (www/) in a real browser: the repository's app with static_dir = www, an admin
-- (whose token lets the script create the FLASH sale), and spec/browser/storefront.mjs driving Debian's chromium
-- headless through playwright-core (spec/browser/package.json; `etc/dev test` runs `npm ci` here
-- first). Screenshots of every step: var/test/browser/ of the repository (replaced by each run; the
-- paths are printed).
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/browser/storefront_spec.lua
local server = require "spec.support.server"
local shop = require "spec.support.shop"
local shell = require "spec.support.shell"

local q, sh = shell.q, shell.sh

describe("storefront in chromium", function()
    local env

    lazy_teardown(function()
        if env then env:teardown() end
    end)

    it("signs up, verifies by the mailed code, logs in, buys at the flash opening, sees the order", function()
        env = shop.setup("fcfs_browser_spec", { workers = 2, static_dir = server.root .. "/www" },
            { mail_interval = 0.2, hold_seconds = 60 })
        local admin = env:member("admin", "ADMIN")
        local code, out = env.s:cli("run " .. q(env.s.lua_dir .. "/cli/seed.lua") .. " 3600") -- the demo catalog
        assert.equal(0, code, out)

        local shots = server.root .. "/var/test/browser"
        assert(sh("rm -rf " .. q(shots) .. " && mkdir -p " .. q(shots)) == 0)
        local cmd = string.format("cd %s && FCFS_URL=%s FCFS_MAIL_DIR=%s FCFS_ADMIN_TOKEN=%s FCFS_SHOTS=%s "
            .. "timeout 150 node storefront.mjs", q(server.root .. "/spec/browser"), q(env.s.url),
            q(env.s.dir .. "/mail"), q(admin.token), q(shots))
        code, out = sh(cmd)
        io.stderr:write(out)
        assert.equal(0, code, out)
        local n = select(2, out:gsub("# screenshot: ", ""))
        assert.truthy(n >= 10, "screenshots: " .. n)
        env:assert_no_errors()
    end)
end)
