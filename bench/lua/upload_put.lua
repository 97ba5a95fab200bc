-- Uploads one file with PUT to a fresh name per request (dufs' contract:
-- PUT creates the file at the request path).
--   BENCH_UPLOAD_FILE  the file to send
--   BENCH_UPLOAD_PATH  the folder to PUT into, e.g. /medications
--   BENCH_TAG          makes names unique across repetitions

local function read_all(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

local prefix = os.getenv("BENCH_UPLOAD_PATH") .. "/" .. os.getenv("BENCH_TAG") .. "-"
local payload = read_all(os.getenv("BENCH_UPLOAD_FILE"))
local next_thread_id = 0

function setup(thread)
  next_thread_id = next_thread_id + 1
  thread:set("thread_id", next_thread_id)
end

local counter = 0

function request()
  counter = counter + 1
  local path = prefix .. tostring(thread_id) .. "-" .. tostring(counter) .. ".jpg"
  return wrk.format("PUT", path, { ["Content-Type"] = "image/jpeg" }, payload)
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
