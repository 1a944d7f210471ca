local helper = require "spec.unit.helper"

describe("lib.auth", function()
    local auth, web, host

    setup(function()
        auth = helper.strict_require "lib.auth"
        web = require "lib.web"
        host = helper.host
    end)

    before_each(function()
        helper.reset()
    end)

    local function req_with(token)
        return helper.req { headers = { Authorization = token and ("Bearer " .. token) or nil } }
    end

    local function fails_with(status, code, fn, ...)
        local ok, e = pcall(fn, ...)
        assert.is_false(ok, "expected a failure")
        assert.is_true(web.is_fail(e), tostring(e))
        assert.equal(status, e.status)
        assert.equal(code, e.code)
    end

    describe("access tokens", function()
        it("carry user, session, role and expiry, checked locally", function()
            local token, exp = auth.issue(7, 42, "USER")
            assert.equal(math.floor(helper.clock) + 900, exp)
            local c = assert(auth.verify(token))
            assert.same({ uid = 7, sid = 42, role = "USER", exp = exp }, c)
        end)

        it("take their lifetime from host.config.app.access_ttl", function()
            host.config = { app = { access_ttl = 60 } }
            local _, exp = auth.issue(1, 1, "USER")
            assert.equal(math.floor(helper.clock) + 60, exp)
        end)

        it("are refused when altered, expired, revoked or malformed", function()
            local token = auth.issue(7, 42, "USER")
            local body, tag = token:match("^(.-)%.(.*)$")
            -- a body claiming another user, with the old tag
            local other = host.crypto.b64url_encode("at1:8:42:USER:" .. (math.floor(helper.clock) + 900))
            assert.same({ nil, "forged" }, { auth.verify(other .. "." .. tag) })
            assert.same({ nil, "forged" }, { auth.verify(body .. "." .. tag .. "x") })
            assert.same({ nil, "malformed" }, { auth.verify("nodot") })
            assert.same({ nil, "malformed" }, { auth.verify(nil) })
            assert.same({ nil, "malformed" }, { auth.verify(string.rep("a", 600) .. ".b") })
            local signed_junk = host.crypto.b64url_encode("junk")
            assert.same({ nil, "malformed" }, { auth.verify(signed_junk .. "." .. host.crypto.hmac(signed_junk)) })

            helper.clock = helper.clock + 901
            assert.same({ nil, "expired" }, { auth.verify(token) })
            helper.reset()
            host.shared.revoked:set("s:42", true, 900)
            assert.same({ nil, "revoked" }, { auth.verify(token) })
        end)

        it("once verified, are still checked for expiry and revocation at every use", function()
            local token = auth.issue(9, 77, "USER")
            assert(auth.verify(token))
            assert(auth.verify(token)) -- the signature is not checked again, the rest is
            local body, tag = token:match("^(.-)%.(.*)$")
            assert.same({ nil, "forged" }, { auth.verify(body .. "." .. tag:sub(2)) })
            host.shared.revoked:set("s:77", true, 900)
            assert.same({ nil, "revoked" }, { auth.verify(token) })
            host.shared.revoked:delete("s:77")
            assert(auth.verify(token))
            helper.clock = helper.clock + 901
            assert.same({ nil, "expired" }, { auth.verify(token) })
        end)
    end)

    describe("the verified-token cache", function()
        it("checks a token once: later uses share its claims table, still checked for expiry and revocation",
            function()
            local token = auth.issue(1001, 2001, "USER")
            local c1 = assert(auth.verify(token))
            local c2 = assert(auth.verify(token))
            assert.equal(c1, c2) -- the same table: a member clicking again makes no garbage
            assert.equal(1, helper.token_checks)
            host.shared.revoked:set("s:2001", true, 900)
            assert.same({ nil, "revoked" }, { auth.verify(token) })
            host.shared.revoked:delete("s:2001")
            helper.clock = helper.clock + 901
            assert.same({ nil, "expired" }, { auth.verify(token) })
        end)

        it("gives a slot taken by another token (a new generation) that token's claims", function()
            local a, b = auth.issue(1002, 2002, "USER"), auth.issue(1003, 2003, "ADMIN")
            local ca = assert(auth.verify(a))
            helper.evict(a)
            local cb = assert(auth.verify(b))
            assert.are_not.equal(ca, cb)
            assert.same({ uid = 1003, sid = 2003, role = "ADMIN", exp = cb.exp }, cb)
            host.shared.revoked:set("s:2003", true, 900)
            assert.same({ nil, "revoked" }, { auth.verify(b) })
            assert.same({ uid = 1002, sid = 2002, role = "USER", exp = ca.exp }, assert(auth.verify(a)))
        end)

        it("makes claims anew for a token the cache does not hold", function()
            helper.uncached = true
            local token = auth.issue(1004, 2004, "USER")
            local c1, c2 = assert(auth.verify(token)), assert(auth.verify(token))
            assert.are_not.equal(c1, c2)
            assert.same(c1, c2)
            host.shared.revoked:set("s:2004", true, 900)
            assert.same({ nil, "revoked" }, { auth.verify(token) })
        end)
    end)

    describe("route access", function()
        local function handler(req) return { json = { uid = req.auth.uid } } end

        it("member: 401 without a valid token, the handler with one", function()
            local h = auth.member(handler)
            fails_with(401, "UNAUTHORIZED", h, req_with(nil))
            fails_with(401, "UNAUTHORIZED", h, req_with("garbage"))
            local r = helper.req { headers = { Authorization = "Basic abc" } }
            fails_with(401, "UNAUTHORIZED", h, r)
            assert.same({ json = { uid = 7 } }, h(req_with(auth.issue(7, 1, "USER"))))
        end)

        it("admin: 403 for a member, the handler for an admin", function()
            local h = auth.admin(handler)
            fails_with(401, "UNAUTHORIZED", h, req_with(nil))
            fails_with(403, "FORBIDDEN", h, req_with(auth.issue(7, 1, "USER")))
            assert.same({ json = { uid = 9 } }, h(req_with(auth.issue(9, 2, "ADMIN"))))
        end)
    end)

    describe("revocation", function()
        it("records in Redis, publishes, and refuses at once on this node", function()
            helper.redis_reply = function() return 1 end
            local token = auth.issue(7, 42, "USER")
            assert.is_true(auth.revoke({ 42, 43 }))
            local cmds = helper.pipelines[1]
            assert.equal("ZADD", cmds[1][1])
            assert.equal(auth.REVOKED_KEY, cmds[1][2])
            assert.same({ "42", "43" }, { cmds[1][4], cmds[1][6] })
            assert.equal(string.format("%d", math.floor(helper.clock * 1000)), cmds[1][3])
            assert.equal("ZREMRANGEBYSCORE", cmds[2][1])
            assert.same({ "PUBLISH", auth.CHANNEL, "42,43" }, cmds[3])
            assert.same({ nil, "revoked" }, { auth.verify(token) })
            -- the entry lives as long as a token of the session may: the access-token lifetime
            helper.clock = helper.clock + 899
            assert.is_true(host.shared.revoked:get("s:43"))
            helper.clock = helper.clock + 2
            assert.is_nil(host.shared.revoked:get("s:43"))
        end)

        it("reports a Redis failure and records nothing locally (the client retries)", function()
            local pipeline = host.redis.pipeline
            host.redis.pipeline = function() return nil, "unavailable" end
            finally(function() host.redis.pipeline = pipeline end)
            assert.same({ nil, "unavailable" }, { auth.revoke({ 5 }) })
            assert.is_nil(host.shared.revoked:get("s:5"))
        end)

        it("rebuilds the local set from the sorted set, each entry with its remaining lifetime", function()
            local now = math.floor(helper.clock * 1000)
            local seen
            helper.redis_reply = function(...)
                seen = { ... }
                return { "10", tostring(now - 800 * 1000), "11", tostring(now - 10 * 1000) }
            end
            assert.is_true(auth.rebuild())
            assert.equal("ZRANGEBYSCORE", seen[1])
            assert.equal(string.format("%d", now - 900 * 1000), seen[3])
            assert.is_true(host.shared.revoked:get("s:10"))
            assert.is_true(host.shared.revoked:get("s:11"))
            helper.clock = helper.clock + 101
            assert.is_nil(host.shared.revoked:get("s:10"))
            assert.is_true(host.shared.revoked:get("s:11"))
        end)
    end)
end)
