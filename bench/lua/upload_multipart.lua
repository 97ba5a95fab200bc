-- Uploads one file as multipart/form-data (botilyx-media's POST contract).
-- The body is built once; the server names every stored file itself, so the
-- same body can be sent over and over.
--   BENCH_UPLOAD_FILE  the file to send
--   BENCH_UPLOAD_PATH  the collection to POST to, e.g. /medications

local function read_all(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

local boundary = "----botilyx-bench-7d3f9a1c"
local payload = read_all(os.getenv("BENCH_UPLOAD_FILE"))

wrk.method = "POST"
wrk.path = os.getenv("BENCH_UPLOAD_PATH")
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = "--" .. boundary .. "\r\n" ..
  'Content-Disposition: form-data; name="file"; filename="photo.jpg"\r\n' ..
  "Content-Type: image/jpeg\r\n\r\n" ..
  payload .. "\r\n" ..
  "--" .. boundary .. "--\r\n"

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
