require "spec.unit.helper"

describe("lib.router", function()
    local router

    setup(function()
        router = require "lib.router"
    end)

    -- Registers {method, pattern} pairs; each handler is the string "METHOD pattern".
    local function build(routes)
        local r = router.new()
        for _, m in ipairs(routes) do
            r:add(m[1], m[2], m[1] .. " " .. m[2])
        end
        return r
    end

    it("matches literal routes, the root and nothing else", function()
        local r = build { { "GET", "/" }, { "GET", "/healthz" }, { "GET", "/api/products" } }
        local h, params, pattern = r:match("GET", "/healthz")
        assert.equal("GET /healthz", h)
        assert.equal("/healthz", pattern)
        assert.same({}, params)
        assert.equal("GET /", (r:match("GET", "/")))
        assert.equal("GET /api/products", (r:match("GET", "/api/products")))
        for _, p in ipairs({ "/health", "/healthz/", "/api", "/api/products/1", "", "healthz", "//healthz" }) do
            local h2, err = r:match("GET", p)
            assert.is_nil(h2, p)
            assert.equal(router.NOT_FOUND, err, p)
        end
    end)

    it("captures named parameters and percent-decodes them", function()
        local r = build { { "GET", "/users/:id" }, { "GET", "/a/:x/b/:y" } }
        local h, params, pattern = r:match("GET", "/users/42")
        assert.equal("GET /users/:id", h)
        assert.equal("/users/:id", pattern)
        assert.same({ id = "42" }, params)
        local _, p2 = r:match("GET", "/a/one/b/two%20words")
        assert.same({ x = "one", y = "two words" }, p2)
        assert.is_nil((r:match("GET", "/users/")))
        assert.is_nil((r:match("GET", "/users")))
    end)

    it("enforces character-class constraints on parameters", function()
        local r = build { { "GET", "/products/:id[%d]" }, { "GET", "/tags/:slug[%w_-]" } }
        local _, params = r:match("GET", "/products/123")
        assert.same({ id = "123" }, params)
        assert.is_nil((r:match("GET", "/products/12a")))
        assert.is_nil((r:match("GET", "/products/a12")))
        assert.is_nil((r:match("GET", "/products/-1")))
        local _, p2 = r:match("GET", "/tags/new_arrivals-2")
        assert.same({ slug = "new_arrivals-2" }, p2)
        assert.is_nil((r:match("GET", "/tags/a.b")))
    end)

    it("prefers literal > param > splat whatever the registration order", function()
        local r = build {
            { "GET", "/files/*" },
            { "GET", "/users/:name" },
            { "GET", "/users/:id[%d]" },
            { "GET", "/users/*" },
            { "GET", "/users/me" },
        }
        assert.equal("GET /users/me", (r:match("GET", "/users/me")))
        assert.equal("GET /users/:id[%d]", (r:match("GET", "/users/7")))
        assert.equal("GET /users/:name", (r:match("GET", "/users/alice")))
        local h, params = r:match("GET", "/users/alice/photos/1")
        assert.equal("GET /users/*", h)
        assert.same({ splat = "alice/photos/1" }, params)
    end)

    it("backtracks when a more specific branch fails deeper", function()
        local r = build { { "GET", "/users/new" }, { "GET", "/users/:id/edit" }, { "GET", "/users/*" } }
        local h, params = r:match("GET", "/users/new/edit")
        assert.equal("GET /users/:id/edit", h)
        assert.same({ id = "new" }, params)
        h, params = r:match("GET", "/users/new/other")
        assert.equal("GET /users/*", h)
        assert.same({ splat = "new/other" }, params)
    end)

    it("splat takes the rest of the path, possibly empty, after the slash", function()
        local r = build { { "GET", "/static/*" }, { "GET", "/p/:id/*" } }
        local _, p = r:match("GET", "/static/css/site.css")
        assert.same({ splat = "css/site.css" }, p)
        _, p = r:match("GET", "/static/")
        assert.same({ splat = "" }, p)
        assert.is_nil((r:match("GET", "/static")))
        _, p = r:match("GET", "/p/9/a/b")
        assert.same({ id = "9", splat = "a/b" }, p)
    end)

    it("keeps per-method tables and answers 405 with the allowed methods", function()
        local r = build {
            { "GET", "/orders/:id[%d]" },
            { "DELETE", "/orders/:id[%d]" },
            { "POST", "/orders" },
        }
        assert.equal("DELETE /orders/:id[%d]", (r:match("DELETE", "/orders/5")))
        local h, err, allowed = r:match("PUT", "/orders/5")
        assert.is_nil(h)
        assert.equal(router.METHOD_NOT_ALLOWED, err)
        assert.same({ "DELETE", "GET", "HEAD" }, allowed)
        assert.equal("DELETE, GET, HEAD", router.allow_header(allowed))
        h, err, allowed = r:match("GET", "/orders")
        assert.is_nil(h)
        assert.equal(router.METHOD_NOT_ALLOWED, err)
        assert.same({ "POST" }, allowed)
        -- a path that matches no route at all stays a 404
        h, err = r:match("PUT", "/orders/x")
        assert.is_nil(h)
        assert.equal(router.NOT_FOUND, err)
    end)

    it("unions the allowed methods of every route the path matches", function()
        local r = build { { "GET", "/items/special" }, { "PATCH", "/items/:id" } }
        local h, err, allowed = r:match("POST", "/items/special")
        assert.is_nil(h)
        assert.equal(router.METHOD_NOT_ALLOWED, err)
        assert.same({ "GET", "HEAD", "PATCH" }, allowed)
        -- and the method picks the less specific route when only it has the method
        assert.equal("PATCH /items/:id", (r:match("PATCH", "/items/special")))
    end)

    it("answers HEAD with the GET route unless HEAD has its own", function()
        local r = build { { "GET", "/a" }, { "GET", "/b" }, { "HEAD", "/b" }, { "POST", "/c" } }
        assert.equal("GET /a", (r:match("HEAD", "/a")))
        assert.equal("HEAD /b", (r:match("HEAD", "/b")))
        local h, err, allowed = r:match("HEAD", "/c")
        assert.is_nil(h)
        assert.equal(router.METHOD_NOT_ALLOWED, err)
        assert.same({ "POST" }, allowed)
    end)

    it("returns a fresh params table per match and a read-only empty one without params", function()
        local r = build { { "GET", "/u/:id" }, { "GET", "/plain" } }
        local _, p1 = r:match("GET", "/u/1")
        local _, p2 = r:match("GET", "/u/2")
        assert.are_not.equal(p1, p2)
        assert.same({ id = "1" }, p1)
        local _, p3 = r:match("GET", "/plain")
        assert.equal(router.NO_PARAMS, p3)
        assert.has_error(function() p3.x = 1 end)
    end)

    it("rejects bad patterns and duplicates at registration", function()
        local r = router.new()
        assert.has_error(function() r:add("GET", "nope", 1) end)
        assert.has_error(function() r:add("GET", "/a/*/b", 1) end)
        assert.has_error(function() r:add("GET", "/a/:", 1) end)
        assert.has_error(function() r:add("GET", "/a/:1x", 1) end)
        assert.has_error(function() r:add("GET", "/a/b:c", 1) end)
        assert.has_error(function() r:add("GET", "/a/:id[%", 1) end)
        assert.has_error(function() r:add("GET", "/a", nil) end)
        r:add("GET", "/users/:id", 1)
        assert.has_error(function() r:add("GET", "/users/:uid", 2) end)
        -- same shape, other method: fine; other constraint: a distinct route
        r:add("POST", "/users/:uid", 3)
        r:add("GET", "/users/:id[%d]", 4)
        assert.equal(4, (r:match("GET", "/users/1")))
        local _, params = r:match("POST", "/users/1")
        assert.same({ uid = "1" }, params)
    end)

    it("does not let a failed match leak allowed methods into the next one", function()
        local r = build { { "GET", "/x" }, { "POST", "/y" } }
        local _, err = r:match("POST", "/x")
        assert.equal(router.METHOD_NOT_ALLOWED, err)
        local h = r:match("POST", "/y")
        assert.equal("POST /y", h)
        local _, err2 = r:match("GET", "/z")
        assert.equal(router.NOT_FOUND, err2)
    end)
    it("remembers a matched path with parameters: same answer, a fresh params table, forgotten on add", function()
        local r = router.new()
        r:add("GET", "/p/:id[%d]/x/:name", "first")
        local h1, p1, pat = r:match("GET", "/p/7/x/a%20b")
        assert.same({ "first", { id = "7", name = "a b" }, "/p/:id[%d]/x/:name" }, { h1, p1, pat })
        p1.id = "changed"
        local h2, p2 = r:match("GET", "/p/7/x/a%20b") -- remembered
        assert.equal("first", h2)
        assert.same({ id = "7", name = "a b" }, p2)
        assert.are_not.equal(p1, p2)
        -- a route added later that wins for the path is seen at once
        r:add("GET", "/p/7/x/:name", "literal")
        local h3, p3 = r:match("GET", "/p/7/x/a%20b")
        assert.equal("literal", h3)
        assert.same({ name = "a b" }, p3)
        -- other methods are matched on their own
        local _, err = r:match("POST", "/p/7/x/a%20b")
        assert.equal(router.METHOD_NOT_ALLOWED, err)
    end)
end)
