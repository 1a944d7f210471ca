-- Black-box specs of static_dir (host/static.c): the real binary serving a directory the spec
-- builds, beside a small app whose routes win over the files. Content types, ETag / If-None-Match,
-- Cache-Control, no ranges, the in-memory cache following edits, and every way out of the root
-- refused (.., encoded dots and slashes, NUL, backslashes, hidden files, symlinks out).
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/static_spec.lua
local server = require "spec.support.server"
local http = require "spec.support.http"
local shell = require "spec.support.shell"

local q, sh = shell.q, shell.sh

local APP = [[
local web = require "lib.web"
local app = web.new()
app:get("/healthz", function() return { json = { status = "ok" } } end)
app:get("/api/hello", function() return { json = { hello = "app" } } end)
app:get("/shadowed.txt", function() return { body = "from the app" } end)
return app
]]

local function write(path, data)
    local f = assert(io.open(path, "wb"))
    f:write(data)
    f:close()
end

local function get(s, path, headers, method)
    return assert(http.request{ port = s.port, method = method or "GET", path = path, headers = headers })
end

-- The status of one raw request line (the path exactly as given, nothing normalised on the way).
local function raw_status(s, path)
    local c = assert(http.connect(s.port))
    assert(c:send_raw("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    local res = assert(c:read_response())
    c:close()
    return res.status, res.body
end

describe("static_dir", function()
    local s, root, www, big

    lazy_setup(function()
        local _, out = sh("mktemp -d \"${TMPDIR:-/tmp}/fcfs-static.XXXXXX\"")
        root = out:gsub("%s+$", "")
        www = root .. "/www"
        assert(sh("mkdir -p " .. q(www .. "/a/b") .. " " .. q(www .. "/dir")) == 0)
        write(root .. "/secret.txt", "TOP-SECRET-7d1e")
        write(www .. "/index.html", "<!doctype html><title>shop</title>")
        write(www .. "/app.js", "console.log('js')")
        write(www .. "/style.css", "body{}")
        write(www .. "/logo.svg", "<svg/>")
        write(www .. "/data.bin", "\0\1\2")
        write(www .. "/a/b/deep.txt", "deep")
        write(www .. "/a/b/index.html", "<p>b</p>")
        write(www .. "/shadowed.txt", "from the file")
        write(www .. "/.env", "SECRET=1")
        big = string.rep("0123456789abcdef", 512) -- 8 KiB, over the cache below
        write(www .. "/big.txt", big)
        assert(sh("ln -s ../secret.txt " .. q(www .. "/out.txt")) == 0)
        assert(sh("ln -s " .. q(root) .. " " .. q(www .. "/outdir")) == 0)
        assert(sh("ln -s a/b/deep.txt " .. q(www .. "/in.txt")) == 0)
        s = server.start { app = APP, conf = { static_dir = www, static_cache_size = 4096 } }
    end)

    lazy_teardown(function()
        if s then s:stop() end
        if root then sh("rm -rf " .. q(root)) end
    end)

    it("serves index.html for / with its type, an ETag, Cache-Control and no ranges", function()
        local res = get(s, "/")
        assert.equal(200, res.status)
        assert.equal("<!doctype html><title>shop</title>", res.body)
        assert.equal("text/html; charset=utf-8", res.headers["content-type"])
        assert.matches('^"%x+%-%x+"$', res.headers["etag"])
        assert.equal("no-cache", res.headers["cache-control"])
        assert.equal("none", res.headers["accept-ranges"])
        assert.equal("nosniff", res.headers["x-content-type-options"])
        assert.truthy(res.headers["last-modified"])
        assert.equal("<p>b</p>", get(s, "/a/b/").body)
    end)

    it("sets Content-Type by extension", function()
        assert.equal("text/javascript; charset=utf-8", get(s, "/app.js").headers["content-type"])
        assert.equal("text/css; charset=utf-8", get(s, "/style.css").headers["content-type"])
        assert.equal("image/svg+xml", get(s, "/logo.svg").headers["content-type"])
        local bin = get(s, "/data.bin")
        assert.equal("application/octet-stream", bin.headers["content-type"])
        assert.equal("\0\1\2", bin.body)
    end)

    it("answers If-None-Match with 304 and no body, 200 for another tag", function()
        local etag = get(s, "/app.js").headers["etag"]
        local res = get(s, "/app.js", { ["If-None-Match"] = etag })
        assert.equal(304, res.status)
        assert.equal("", res.body)
        assert.equal(etag, res.headers["etag"])
        assert.equal(304, get(s, "/app.js", { ["If-None-Match"] = '"x", W/' .. etag }).status)
        assert.equal(304, get(s, "/app.js", { ["If-None-Match"] = "*" }).status)
        assert.equal(200, get(s, "/app.js", { ["If-None-Match"] = '"other"' }).status)
    end)

    it("ignores Range (the whole file, 200) and answers HEAD without a body", function()
        local res = get(s, "/big.txt", { Range = "bytes=0-9" })
        assert.equal(200, res.status)
        assert.equal(big, res.body) -- larger than static_cache_size: read per request
        local c = assert(http.connect(s.port))
        assert(c:send_raw("HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\n"))
        local head = assert(c:read_response{ head = true })
        c:close()
        assert.equal(200, head.status)
        assert.equal(tostring(#"console.log('js')"), head.headers["content-length"])
    end)

    it("serves an edited file at once (the cache follows mtime and size)", function()
        local before = get(s, "/style.css")
        assert.equal("body{}", before.body)
        write(www .. "/style.css", "body{color:red}")
        assert(sh("touch -d '+2 seconds' " .. q(www .. "/style.css")) == 0)
        local after = get(s, "/style.css")
        assert.equal("body{color:red}", after.body)
        assert.are_not.equal(before.headers["etag"], after.headers["etag"])
        assert.equal(200, get(s, "/style.css", { ["If-None-Match"] = before.headers["etag"] }).status)
    end)

    it("lets the app's routes win; other methods and missing files get the app's JSON 404", function()
        assert.equal("from the app", get(s, "/shadowed.txt").body)
        assert.equal('{"hello":"app"}', get(s, "/api/hello").body)
        local missing = get(s, "/nope.js")
        assert.equal(404, missing.status)
        assert.equal("NOT_FOUND", http.json(missing).error.code)
        assert.equal(404, get(s, "/app.js", nil, "POST").status)
        assert.equal(404, get(s, "/dir").status) -- a directory is not a file
    end)

    it("refuses every way out of the root: 400 or 404, never the file", function()
        local attempts = {
            "/../secret.txt", "/a/../../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt",
            "/a/%2e%2e/%2e%2e/secret.txt", "/..%2fsecret.txt", "/a%2fb%2fdeep.txt", "/%2e%2e%5csecret.txt",
            "/a/b/..\\..\\..\\secret.txt", "/app.js%00.txt", "/./app.js", "/%2e/app.js", "/.env",
            "/%2eenv", "/out.txt", "/outdir/secret.txt", "/a/b/%", "/a/b/%zz",
        }
        for _, path in ipairs(attempts) do
            local status, body = raw_status(s, path)
            assert.truthy(status == 400 or status == 404, path .. " -> " .. tostring(status))
            assert.is_nil(body:find("TOP-SECRET", 1, true), path)
            assert.is_nil(body:find("SECRET=1", 1, true), path)
        end
        assert.equal(400, (raw_status(s, "/%2e%2e/secret.txt")))
        assert.equal(400, (raw_status(s, "/a%2fb%2fdeep.txt")))
        assert.equal(400, (raw_status(s, "/app.js%00.txt")))
        assert.equal(404, (raw_status(s, "/out.txt")))
        assert.equal("deep", get(s, "/in.txt").body) -- a symlink inside the root is followed
        assert.equal("deep", get(s, "//a//b/deep.txt").body)
    end)

    it("refuses to start with a static_dir that is not a directory", function()
        local ok, err = pcall(server.start, { app = APP, conf = { static_dir = root .. "/secret.txt" } })
        assert.is_false(ok)
        assert.matches("static_dir", tostring(err))
    end)

    it("logs no unexpected error", function()
        s:stop()
        s:assert_no_errors()
    end)
end)
