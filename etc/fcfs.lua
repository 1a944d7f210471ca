-- Default configuration of fcfs: `fcfs -c etc/fcfs.lua`, run from the
-- repository root (relative paths below are relative to the working
-- directory). The chunk returns one flat table; every key is a field of
-- host/conf.h. Any key can be overridden at start with an environment
-- variable FCFS_<KEY> (upper case), e.g. FCFS_WORKERS=0 or
-- FCFS_LISTEN=0.0.0.0:8080. An unknown key or a bad value stops the start with
-- a message naming the key. `etc/dev services start` provides the Redis and
-- MariaDB this file points at (under var/).
return {
  -- process and network ----------------------------------------------------
  listen = "127.0.0.1:8080",       -- address:port of the HTTP listener
  -- workers = 2,                  -- worker processes; omitted = one per core; 0 = single process in the foreground
  backlog = 4096,                  -- listen(2) backlog
  max_connections = 16384,         -- open client connections per worker
  run_dir = "var/run",             -- pid file and logs live here
  pid_file = "var/run/fcfs.pid",   -- master pid; read by `fcfs -s ...`
  heartbeat_timeout = 2,           -- s: a worker silent that long is killed and respawned
  drain_timeout = 10,              -- s: QUIT and reload wait that long for in-flight requests
  -- worker_cpu_affinity = "auto",  -- each worker's loop on its own CPU ({ 2, 3 }: these); omitted = off

  -- Lua ----------------------------------------------------------------------
  lua_dir = "lua",                 -- holds app.lua and the modules it requires
  lua_path = "",                   -- extra package.path entries, ';'-separated
  dev = false,                     -- true: watch lua_dir and reload Lua on save

  -- HTTP limits and timeouts (seconds) -----------------------------------------
  request_timeout = 30,            -- handler deadline -> 504
  header_timeout = 10,             -- request line + headers must arrive within -> 408
  body_timeout = 10,               -- body must arrive within -> 408
  idle_timeout = 60,               -- idle keep-alive connection closed silently
  max_requests_per_conn = 10000,   -- keep-alive requests before the connection is closed
  max_url = 8192,                  -- request target bytes -> 414
  max_header_size = 16384,         -- request line + header bytes -> 431
  max_headers = 100,               -- header lines -> 431
  max_body = 1048576,              -- body bytes -> 413

  -- logs ---------------------------------------------------------------------
  error_log = "var/run/error.log", -- path or "stderr"
  access_log = "var/run/access.log", -- path, "stderr" or "off"
  log_level = "info",              -- debug|info|notice|warn|error

  -- Redis (etc/dev services: unix socket var/redis/redis.sock, TCP 127.0.0.1:6390)
  redis = "unix:var/redis/redis.sock", -- "127.0.0.1:6390" or "unix:/path/redis.sock"
  redis_connections = 2,           -- shared, pipelined connections per worker: the first one up
                                   -- takes every command until it owes 256 replies, then the one
                                   -- owing the fewest (one write per loop iteration at normal load)
  redis_pinned_max = 16,           -- pinned (MULTI/blocking) connections per worker
  redis_connect_timeout = 1,       -- s
  redis_timeout = 1,               -- s per command
  -- Redis: queue bound, AUTH, SELECT
  redis_queue_max = 10000,         -- replies owed on one shared connection before calls get "busy"
  redis_password = "",             -- AUTH <password> on every connection when not ""
  redis_db = 0,                    -- SELECT <db> on every connection when not 0
  -- Redis: Sentinel. With sentinels listed, `redis` is not used: the master's address is asked for
  -- (SENTINEL get-master-addr-by-name) before connecting, after every lost connection and every
  -- second; a connection to a server that is not the master (ROLE) is closed.
  redis_sentinels = {},            -- { "127.0.0.1:26379", ... } (IP:port, no names); {} = no Sentinel
  redis_master_name = "mymaster",  -- the name the sentinels monitor the master under

  -- MySQL (etc/dev services: unix socket var/mysql/mysql.sock, TCP 127.0.0.1:3390)
  mysql_host = "127.0.0.1",        -- an IP, never a name (DNS would block the loop)
  mysql_port = 3390,               -- used with mysql_host when mysql_socket is ""
  mysql_socket = "var/mysql/mysql.sock", -- unix socket; used instead of host:port when not ""
  mysql_user = "fcfs",
  mysql_password = "fcfs-dev-only", -- local development password; set FCFS_MYSQL_PASSWORD elsewhere
  mysql_database = "fcfs",
  mysql_pool_size = 8,             -- connections per worker
  mysql_queue_size = 1024,         -- requests waiting for a free connection
  mysql_wait_timeout = 1,          -- s a request waits for a connection
  mysql_connect_timeout = 2,       -- s
  mysql_query_timeout = 5,         -- s per query
  mysql_breaker_failures = 5,      -- consecutive failures that open the circuit
  mysql_breaker_cooldown = 2,      -- s before a half-open probe
  migrations_dir = "migrations",   -- numbered .sql files applied by `fcfs migrate`

  -- host.crypto: keys live in a secrets file or the environment (FCFS_SECRET_*), never here;
  -- the format is described in etc/secrets.dev
  secrets_file = "etc/secrets.dev", -- DEMO keys: refused with dev = false (`etc/dev run` uses
                                   -- var/secrets, random keys it makes once); "" = environment only
  argon2_ops = 2,                  -- argon2id passes of password_hash (OWASP minimum 2 at 19 MiB)
  argon2_mem_kib = 19456,          -- argon2id memory per hash, KiB (19 MiB): 23-33 ms per hash on
                                   -- one core of the 2-core dev machine; each worker hashes on
                                   -- its libuv thread pool (UV_THREADPOOL_SIZE, default 4), each
                                   -- thread keeping this much memory once it has hashed
  -- outbound TCP (host.tcp); timeouts in s, always clamped to the request's time left
  tcp_connect_timeout = 5,         -- name resolution + connect -> nil, "timeout"
  tcp_send_timeout = 10,           -- one s:send()
  tcp_read_timeout = 10,           -- one s:receive()
  tcp_buffer_max = 1048576,        -- bytes one s:receive() may buffer -> nil, "too large"

  -- admin listener and client addresses ----------------------------------------
  admin_listen = "unix:var/run/admin.sock", -- serves /_host/* and /metrics (the public listener
                                   -- never does): "unix:PATH" (mode 0600), a loopback
                                   -- "127.0.0.1:9145" / "[::1]:9145", or "" for none
  real_ip_from = {},               -- trusted proxies (CIDRs), e.g. { "127.0.0.1/32", "::1/128" };
                                   -- only their requests may set the client address from ...
  real_ip_header = "X-Forwarded-For", -- ... this header (right-most address not itself trusted)
  -- lifecycle: reloads, timers, clients that go away ------------------------------
  reload_timeout = 30,             -- s: every worker must have loaded and run init_worker of a reload,
                                   -- else it is refused everywhere (and `fcfs -s reload` says so)
  max_pending_timers = 4096,       -- host.timer.at/every pending per worker; past it: nil, "too many timers"
  client_abort = "finish",         -- a client gone mid-request: "finish" runs the handler to its end
                                   -- (answer dropped), "cancel" stops it at its next I/O

  -- host primitives: shared dictionaries, node identity ------------------------
  shared_dicts = {                 -- host.shared.NAME in every worker: name = size ("8m", "512k", bytes;
    revoked = "8m",                --   16k..1024m each, header and index included); made by the master,
    limits = "4m",                 --   kept across reloads; env: FCFS_SHARED_DICTS="revoked=8m,limits=4m"
    catalog = "8m",                --   lua/products.lua: the stock read's cache (app.stock_cache_ttl)
  },
  -- node_id = "shop-1",           -- host.node_id; omitted = the hostname

  -- stock gates (host.stock): per-product remaining/version/paused in shared memory
  stock_slots = 1024,              -- products with a gate at once; one more update gets nil, "full"

  -- static files (host/static.c) and streamed answers (host.stream, server-sent events)
  static_dir = "www",              -- the storefront: GET/HEAD that no app route matches are looked up
                                   --   here ("/" = index.html); "" = none. The app's routes win.
  static_max_age = 0,              -- s of Cache-Control max-age; 0 = "no-cache" (revalidated by ETag)
  static_cache_size = 8388608,     -- bytes of file contents each worker keeps in memory (LRU; a file
                                   --   edited on disk is re-read at once: mtime, size and inode checked)
  stream_timeout = 3600,           -- s a streamed answer lasts at most (instead of request_timeout)
  stream_send_timeout = 10,        -- s host.stream.send waits for a slow client -> nil, "timeout"

  -- the application (host.config.app; free-form, read by the Lua side) ------------
  app = {
    -- services across hosts (etc/nginx/ is the gateway in front of them)
    -- modules = { "users", "products", "wishlist", "orders", "flash" }, -- the modules this host serves
                                     --   (routes and timers; also "users,products"); omitted = all
    -- members (lua/users.lua, lua/sessions.lua, lua/lib/auth.lua, lua/mail.lua)
    access_ttl = 900,                -- s an access token lives (revocations are kept that long)
    refresh_ttl = 1209600,           -- s a refresh token lives after its last use (14 days)
    session_purge_interval = 3600,   -- s between purges of sessions over for a day (absent: none)
    code_ttl = 300,                  -- s a mailed verification code lives
    resend_interval = 60,            -- s between two verification mails to one address
    login_max_failures_email = 5,    -- failed logins per email within login_failure_window -> 429
    login_max_failures_ip = 20,      -- failed logins per client address within the window -> 429
    login_failure_window = 900,      -- s
    mail_transport = "file",         -- "file": one .eml per message under <run_dir>/mail/
    mail_interval = 1,               -- s between two outbox sweeps of a worker
    mail_from = "fcfs <no-reply@fcfs.invalid>",
    public_url = "http://127.0.0.1:8080", -- base of the links in mails
    utc_offset = "+09:00",           -- the business time zone (Asia/Seoul) of the times the API shows
    -- commerce (lua/products.lua, lua/orders.lua, lua/wishlist.lua, lua/jobs/lifecycle.lua)
    day_seconds = 86400,             -- s in the order lifecycle's day D (SHIPPING at +1D, DELIVERED at +2D)
    lifecycle_interval = 1,          -- s between two runs of the lifecycle scheduler (worker 0; absent: none)
    lifecycle_batch = 100,           -- orders per scheduler transaction ...
    lifecycle_max_batches = 10,      -- ... and transactions per step and run (bounded catch-up)
    stock_cache_ttl = 1,             -- s GET /api/products/:id/stock may lag a write made on another host
    idempotency_ttl = 86400,         -- s an Idempotency-Key record is kept (at least)
    -- flash purchase (lua/flash.lua, lua/payment.lua)
    hold_seconds = 300,              -- s a flash hold waits for its payment, then the unit goes back
    flash_sweep_interval = 0.5,      -- s between two expiry sweeps (every worker; also refreshes the gate
                                     --   and drains the order events into MySQL)
    flash_settle_seconds = 15,       -- s after a pay began that the sweeper settles it from MySQL (a pay that
                                     --   never finished: paid there -> PAID; else FAILED, refunded, unit back)
    flash_watch_interval = 1,        -- s between two Redis run id checks (worker 0; a change -> rebuild)
    flash_events_batch = 100,        -- order events per product per batch (one MySQL transaction)
    flash_events_max_batches = 10,   -- ... and batches per product per run (bounded catch-up)
    flash_events_claim_idle = 30,    -- s an event read by a consumer stays unacknowledged before another takes it
    payment = {                      -- the built-in payment simulator
      failure_rate = 0.2,            -- probability that a charge is declined (402 PAYMENT_FAILED)
      latency = 0,                   -- s a charge takes
    },
  },
}
