local helper = require "spec.unit.helper"
local cjson = require "cjson"

describe("lib.json", function()
    local json

    setup(function()
        json = helper.strict_require "lib.json"
    end)

    describe("encode", function()
        it("keeps large integers integral", function()
            assert.equal("1000000000000000", json.encode(1e15))
            assert.equal("9007199254740992", json.encode(2 ^ 53))
            assert.equal("-9007199254740992", json.encode(-2 ^ 53))
            assert.equal("1152921504606846976", json.encode(2 ^ 60))
            assert.equal("[0,-1,42]", json.encode({ 0, -1, 42 }))
            assert.equal('{"price":129000000000000}', json.encode({ price = 129000000000000 }))
        end)

        it("prints other numbers with 14 significant digits, as cjson does", function()
            assert.equal("0.1", json.encode(0.1))
            assert.equal("2.5", json.encode(2.5))
            assert.equal("0.33333333333333", json.encode(1 / 3))
            assert.equal("1e+300", json.encode(1e300))
            assert.equal("[0.33333333333333,[]]", json.encode({ 1 / 3, json.array() }))
        end)

        it("refuses NaN and infinities", function()
            assert.has_error(function() json.encode(0 / 0) end)
            assert.has_error(function() json.encode({ x = math.huge }) end)
            assert.has_error(function() json.encode(-math.huge) end)
        end)

        it("encodes json.array as [] even when empty, a plain empty table as {}", function()
            assert.equal("[]", json.encode(json.array()))
            assert.equal("[]", json.encode(json.array({})))
            assert.equal("{}", json.encode({}))
            local page = json.encode({ items = json.array(), next_cursor = json.null })
            assert.truthy(page:find('"items":[]', 1, true), page)
            assert.truthy(page:find('"next_cursor":null', 1, true), page)
            local t = { 1, 2 }
            assert.equal(t, json.array(t))
            assert.is_true(json.is_array(t))
            assert.equal("[1,2]", json.encode(t))
        end)

        it("encodes null, booleans and nested values", function()
            assert.equal("null", json.encode(json.null))
            assert.equal("null", json.encode(nil))
            assert.equal("[true,false,null]", json.encode({ true, false, json.null }))
            assert.equal(cjson.null, json.null)
            local back = cjson.decode(json.encode({ a = { b = { 1, { c = "d" } } }, e = false }))
            assert.same({ a = { b = { 1, { c = "d" } } }, e = false }, back)
        end)

        it("escapes strings and leaves UTF-8 alone", function()
            assert.equal([["a\"b\\c\nd\te\u0001\u0000"]], json.encode('a"b\\c\nd\te\1\0'))
            assert.equal('"재고가 부족합니다."', json.encode("재고가 부족합니다."))
            assert.equal("/path", cjson.decode(json.encode("/path")))
            assert.equal([["x\ry"]], json.quote("x\ry"))
        end)

        it("treats sparse tables as arrays with nulls unless excessively sparse", function()
            assert.equal('["a",null,"c"]', json.encode({ [1] = "a", [3] = "c" }))
            assert.same({ ["1"] = "a", ["20"] = "b" }, cjson.decode(json.encode({ [1] = "a", [20] = "b" })))
            assert.same({ ["1"] = "a", x = "b" }, cjson.decode(json.encode({ "a", x = "b" })))
        end)

        it("gives the same JSON whichever encoder path runs", function()
            -- a sibling empty array forces the Lua encoder; alone, cjson's output is kept
            local values = {
                { [1] = "a", [3] = "c" }, { [1] = "a", [20] = "b" }, { "a", x = "b" }, { 1, 2, 3 },
                { a = { b = "c/d" }, n = 12.5, t = true, f = false, z = json.null }, "é\n\"", 99999999999999,
                -0.25, { [2] = 1 }, 1e-7, "x\1\0\t\r\b\f\\",
            }
            for i, v in ipairs(values) do
                local alone = json.encode(v)
                local mixed = json.encode({ v, json.array() })
                assert.same(cjson.decode(alone), cjson.decode(mixed)[1], "value #" .. i)
                if type(v) ~= "table" or #v > 0 then
                    -- same text too (up to "\/"), where key order cannot differ
                    assert.equal((alone:gsub("\\/", "/")), (mixed:sub(2, -5):gsub("\\/", "/")), "value #" .. i)
                end
            end
        end)

        it("writes a flat object with the very bytes cjson writes", function()
            local private = cjson.new()
            local strings = { "", "a/b", "é\n\"", "x\1\0\t\r\b\f\\", "plain" }
            local names = { "id", "a/b", "é", "q\"", "n\0", "" }
            math.randomseed(12)
            for round = 1, 2000 do
                local t = {}
                for _ = 1, math.random(1, 10) do
                    local r = math.random()
                    local v = strings[math.random(#strings)]
                    if r < 0.4 then
                        v = math.floor(math.random() * 10 ^ math.random(0, 13)) * (math.random() < 0.5 and -1 or 1)
                    elseif r < 0.55 then
                        v = math.random() < 0.5
                    elseif r < 0.65 then
                        v = json.null
                    end
                    t[names[math.random(#names)] .. (math.random() < 0.5 and "" or tostring(math.random(50)))] = v
                end
                assert.equal(private.encode(t), json.encode(t), "round " .. round)
            end
            assert.equal('{"zero":-0}', json.encode({ zero = -0.0 }))
            assert.equal(private.encode({ n = 99999999999999, m = -99999999999999 }),
                json.encode({ n = 99999999999999, m = -99999999999999 }))
        end)

        it("raises on functions, bad keys and cycles", function()
            assert.has_error(function() json.encode({ f = print }) end)
            assert.has_error(function() json.encode({ [true] = 1 }) end)
            local t = {}
            t.self = t
            assert.has_error(function() json.encode(t) end)
        end)

        it("is reusable after a failed encode", function()
            pcall(json.encode, { 1, print })
            assert.equal("[1,2]", json.encode({ 1, 2 }))
        end)
    end)

    describe("decode", function()
        it("decodes objects, arrays and null", function()
            local v = json.decode('{"a":[1,2,{"b":null}],"c":"d"}')
            assert.same({ a = { 1, 2, { b = json.null } }, c = "d" }, v)
            assert.equal(json.null, v.a[3].b)
        end)

        it("never raises on garbage", function()
            for _, s in ipairs({ "", "{", "nope", "[1,]", "{'a':1}", "\0\1\2", "NaN", "0x10", "[Infinity]",
                string.rep("[", 10000) }) do
                local v, err = json.decode(s)
                assert.is_nil(v, s)
                assert.is_string(err)
            end
            local v, err = json.decode(nil)
            assert.is_nil(v)
            assert.equal("expected a string", err)
            v, err = json.decode({})
            assert.is_nil(v)
            assert.is_string(err)
        end)

        it("keeps integers up to 2^53 exact and round-trips them", function()
            local v = json.decode('{"id":9007199254740992,"n":1000000000000000}')
            assert.equal(2 ^ 53, v.id)
            assert.equal(1e15, v.n)
            assert.equal('{"n":1000000000000000}', json.encode({ n = v.n }))
        end)

        it("decodes scalars too (callers check the type)", function()
            assert.equal(42, json.decode("42"))
            assert.equal("x", json.decode('"x"'))
            assert.equal(false, json.decode("false"))
        end)
    end)
end)
