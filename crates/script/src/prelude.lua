-- The sandbox Redis puts around scripts, set up once per interpreter. Called with the
-- table of Rust-side helpers (`hidden`) and the kind of interpreter ('eval' or
-- 'functions'). Every global a script sees lives in `api`, reached through _G's
-- metatable; _G itself stays empty, so any assignment to a global reaches __newindex.
local hidden = ...
local PRELUDE = '=cacheplane'
local dbg = debug
local tonumber, pairs, ipairs = tonumber, pairs, ipairs
local raw_setmetatable, raw_getmetatable, raw_rawset, raw_rawget = setmetatable, getmetatable, rawset, rawget
local raw_pcall, raw_xpcall, raw_error, raw_type, raw_tostring, raw_select =
  pcall, xpcall, error, type, tostring, select

local protected = raw_setmetatable({}, { __mode = 'k' })

local function readonly_error()
  raw_error('Attempt to modify a readonly table', 2)
end

-- A read-only view of `t`: reads go through, writes fail as Redis's read-only tables do.
local function readonly(t)
  local p = raw_setmetatable({}, { __index = t, __newindex = readonly_error, __metatable = false })
  protected[p] = true
  return p
end

local function nonexistent(_, name)
  raw_error("Script attempted to access nonexistent global variable '" .. raw_tostring(name) .. "'", 0)
end

-- Redis's error handler: the error as a table, with where it happened (the script's line,
-- not the line inside a C function or inside this prelude).
local function handler(err)
  local level = 2
  local i = dbg.getinfo(level, 'nSl')
  while i and (i.what == 'C' or i.source == PRELUDE) do
    level = level + 1
    i = dbg.getinfo(level, 'nSl')
  end
  if raw_type(err) == 'userdata' then
    err = hidden.errmsg(err)
  end
  if raw_type(err) ~= 'table' then
    err = { err = 'ERR ' .. raw_tostring(err) }
  end
  if i then
    err.source = i.source
    err.line = i.currentline
  end
  return err
end

function hidden.run(f)
  return raw_xpcall(f, handler)
end

function hidden.run_function(f, keys, args)
  return raw_xpcall(function() return f(keys, args) end, handler)
end

-- pcall and xpcall as scripts see them: an error table caught becomes its message (Redis
-- 7), and a killed script's error is raised again so that no pcall loop outlives SCRIPT KILL.
local function caught(ok, ...)
  if ok then
    return ok, ...
  end
  local e = ...
  if hidden.killed() then
    raw_error(e, 0)
  end
  if raw_type(e) == 'userdata' then
    e = hidden.errmsg(e)
  end
  if raw_type(e) == 'table' and raw_type(raw_rawget(e, 'err')) == 'string' then
    return false, raw_rawget(e, 'err')
  end
  return false, e
end

local api = {}

api.pcall = function(...)
  return caught(raw_pcall(...))
end
api.xpcall = function(f, h)
  return caught(raw_xpcall(f, h))
end

for _, name in ipairs({ 'tostring', 'getfenv', 'next', 'assert', 'tonumber', 'rawequal',
  'collectgarbage', 'type', 'select', 'unpack', 'gcinfo', 'pairs', 'rawget',
  'ipairs', '_VERSION', 'setfenv', 'load', 'error', 'newproxy' }) do
  api[name] = _G[name]
end

api.setmetatable = function(t, mt)
  if protected[t] then
    raw_error('Attempt to modify a readonly table', 2)
  end
  return raw_setmetatable(t, mt)
end
api.rawset = function(t, k, v)
  if protected[t] then
    raw_error('Attempt to modify a readonly table', 2)
  end
  return raw_rawset(t, k, v)
end
api.getmetatable = raw_getmetatable
-- Precompiled (binary) chunks could break the interpreter: only source is loaded, as Redis.
local raw_loadstring = loadstring
api.loadstring = function(s, name)
  if raw_type(s) == 'string' and s:byte(1) == 27 then
    return nil, 'binary chunks are not allowed'
  end
  return raw_loadstring(s, name)
end

local math_lib = {}
for k, v in pairs(math) do
  math_lib[k] = v
end
math_lib.random = hidden.random
math_lib.randomseed = hidden.randomseed

api.string = readonly(string)
api.table = readonly(table)
api.math = readonly(math_lib)
api.coroutine = readonly(coroutine)
api.bit = readonly(hidden.bit)
api.cjson = readonly(hidden.cjson)
api.cmsgpack = readonly(hidden.cmsgpack)
api.struct = readonly(hidden.struct)
-- Strings' methods come from their metatable; keep scripts from reaching and changing it.
raw_getmetatable('').__metatable = false

local function error_table(text)
  return hidden.error_table(text)
end

local redis = {}
-- redis.call is a Rust function the engine installs (hidden.redis); redis.pcall calls it
-- protected and answers an error as its table.
redis.pcall = function(...)
  local ok, v = raw_pcall(redis.call, ...)
  if ok then
    return v
  end
  if raw_type(v) == 'userdata' then
    v = hidden.errmsg(v)
  end
  if raw_type(v) ~= 'table' then
    v = error_table(raw_tostring(v))
  end
  return v
end
redis.error_reply = function(...)
  local e = ...
  if raw_select('#', ...) ~= 1 or raw_type(e) ~= 'string' then
    return error_table('wrong number or type of arguments')
  end
  if e:sub(1, 1) ~= '-' then
    e = '-' .. e
  end
  return error_table(e)
end
redis.status_reply = function(...)
  local s = ...
  if raw_select('#', ...) ~= 1 or raw_type(s) ~= 'string' then
    return error_table('wrong number or type of arguments')
  end
  return { ok = s }
end
redis.sha1hex = function(...)
  if raw_select('#', ...) ~= 1 then
    raw_error(error_table('wrong number of arguments'))
  end
  return hidden.sha1hex((...))
end

local function log(...)
  local n = raw_select('#', ...)
  if n < 2 then
    raw_error(error_table('redis.log() requires two arguments or more.'))
  end
  local level = ...
  if raw_type(level) ~= 'number' and not (raw_type(level) == 'string' and tonumber(level)) then
    raw_error(error_table('First argument must be a number (log level).'))
  end
  level = tonumber(level)
  if level < 0 or level > 3 then
    raw_error(error_table('Invalid debug level.'))
  end
  hidden.log(...)
end

local function add_log_api(t)
  t.log = log
  t.LOG_DEBUG, t.LOG_VERBOSE, t.LOG_NOTICE, t.LOG_WARNING = 0, 1, 2, 3
  t.REDIS_VERSION = '7.0.15'
  t.REDIS_VERSION_NUM = 0x0007000f
end
add_log_api(redis)

redis.setresp = function(...)
  if raw_select('#', ...) ~= 1 then
    raw_error(error_table('redis.setresp() requires one argument.'))
  end
  local v = tonumber((...))
  if v ~= 2 and v ~= 3 then
    raw_error(error_table('RESP version must be 2 or 3.'))
  end
  hidden.setresp(v)
end
redis.set_repl = function(...)
  if raw_select('#', ...) ~= 1 then
    raw_error(error_table('redis.set_repl() requires two arguments.'))
  end
  local v = tonumber((...)) or 0
  if v < 0 or v > 3 or v % 1 ~= 0 then
    raw_error(error_table('Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.'))
  end
  hidden.set_repl(v)
end
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
-- Scripts always replicate their effects in Redis 7; the switch stays for old scripts.
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.acl_check_cmd = function(...)
  if raw_select('#', ...) == 0 then
    raw_error(error_table('Please specify at least one argument for this redis lib call'))
  end
  local allowed = hidden.acl_check(...)
  if allowed == nil then
    raw_error(error_table('Invalid command passed to redis.acl_check_cmd()'))
  end
  return allowed
end
api.redis = readonly(redis)
hidden.redis = redis
api._G = _G

-- What FUNCTION LOAD's code sees: only redis.register_function, the log and the version.
local load_redis = {}
add_log_api(load_redis)
load_redis.register_function = function(...)
  local register = hidden.register
  if not register then
    raw_error(error_table('redis.register_function can only be called on FUNCTION LOAD command'))
  end
  local e = register(...)
  if e then
    raw_error(error_table(e))
  end
end
raw_setmetatable(load_redis, { __index = nonexistent })
local load_api = { redis = readonly(load_redis) }
raw_setmetatable(load_api, { __index = nonexistent })

raw_setmetatable(api, { __index = nonexistent })
local g_meta = { __index = api, __newindex = readonly_error }
g_meta.__metatable = readonly({ __index = readonly(api), __newindex = readonly_error })
local G = _G
for k in pairs(G) do
  G[k] = nil
end
raw_setmetatable(G, g_meta)
protected[G] = true

hidden.api = api
hidden.g_meta = g_meta
hidden.load_api = load_api
