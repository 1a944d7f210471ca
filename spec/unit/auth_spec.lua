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
        local saved_max, saved_open

        before_each(function()
            saved_max, saved_open = auth.VERIFIED_MAX, host.crypto.hmac_open
        end)

        after_each(function()
            auth.VERIFIED_MAX, host.crypto.hmac_open = saved_max, saved_open
        end)

        it("checks each signature of a repeating crowd once, while one-off tokens turn the generations over",
            function()
            auth.VERIFIED_MAX = 4
            local crowd = {}
            for i = 1, 3 do crowd[i] = auth.issue(1000 + i, 2000 + i, "USER") end
            local checks = 0
            host.crypto.hmac_open = function(...)
                checks = checks + 1
                return saved_open(...)
            end
            for round = 1, 6 do
                for i = 1, #crowd do
                    assert.equal(1000 + i, assert(auth.verify(crowd[i])).uid)
                end
                assert(auth.verify((auth.issue(5000 + round, 6000 + round, "USER"))))
            end
            -- 3 + 6: a single table starting over when full checked the crowd again after each start
            assert.equal(#crowd + 6, checks)
            -- a token moved across generations is still checked for revocation and expiry
            host.shared.revoked:set("s:2003", true, 900)
            assert.same({ nil, "revoked" }, { auth.verify(crowd[3]) })
            helper.clock = helper.clock + 901
            assert.same({ nil, "expired" }, { auth.verify(crowd[1]) })
        end)

        it("forgets the tokens of two generations ago (bounded memory)", function()
            auth.VERIFIED_MAX = 2
            local first = auth.issue(3001, 4001, "USER")
            assert(auth.verify(first))
            for i = 1, 4 do assert(auth.verify((auth.issue(3001 + i, 4001 + i, "USER")))) end
            local checks = 0
            host.crypto.hmac_open = function(...)
                checks = checks + 1
                return saved_open(...)
            end
            assert(auth.verify(first))
            assert.equal(1, checks)
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
