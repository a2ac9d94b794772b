-- wrk script for the main job: replays an LLM trace's request sequence as
-- OpenAI-style chat-completion POSTs.
--
-- Environment:
--   REPLAY_PLAN_FILE     plan written by make_site.py, one request per line:
--                        "<path> <context tokens> <generated tokens>"
--   REPLAY_THREADS       wrk's thread count; thread k starts k/threads of the
--                        way into the plan so threads do not send the same rows
--   REPLAY_SUMMARY_FILE  where done() writes its key=value summary
--
-- wrk is closed-loop: each connection sends its next request when the last
-- response arrives, so the trace's arrival times are not replayed, only the
-- order of requests and their sizes. Each request body carries a prompt of
-- 4 bytes per context token.

local plan = {}
local position = 1
local prompt_cache = {}
local headers = { ["Content-Type"] = "application/json" }

local thread_count = 0

function setup(thread)
  thread:set("replay_thread_index", thread_count)
  thread_count = thread_count + 1
end

local function read_plan(path)
  local file, err = io.open(path, "r")
  if not file then
    error("failed to open the replay plan REPLAY_PLAN_FILE=" .. tostring(path) .. ": " ..
          tostring(err) .. "; make_site.py --plan writes it")
  end
  for line in file:lines() do
    local request_path, context, generated = line:match("^(%S+) (%d+) (%d+)$")
    if not request_path then
      error("invalid replay plan line in " .. path .. ": '" .. line .. "'")
    end
    plan[#plan + 1] = {
      path = request_path,
      context_tokens = tonumber(context),
      generated_tokens = tonumber(generated),
    }
  end
  file:close()
  if #plan == 0 then
    error("replay plan " .. path .. " has no requests")
  end
end

function init(args)
  read_plan(os.getenv("REPLAY_PLAN_FILE"))
  local threads = tonumber(os.getenv("REPLAY_THREADS") or "1") or 1
  local index = replay_thread_index or 0
  position = math.floor(#plan * index / math.max(threads, 1)) % #plan + 1
end

-- Returns a prompt of 4 bytes per token; built once per distinct length.
local function prompt_for(tokens)
  local prompt = prompt_cache[tokens]
  if not prompt then
    prompt = string.rep("tok ", tokens)
    prompt_cache[tokens] = prompt
  end
  return prompt
end

function request()
  local entry = plan[position]
  position = position % #plan + 1
  local body = '{"model":"trace-replay","max_tokens":' .. entry.generated_tokens ..
      ',"messages":[{"role":"user","content":"' .. prompt_for(entry.context_tokens) .. '"}]}'
  return wrk.format("POST", entry.path, headers, body)
end

function done(summary, latency, requests)
  local path = os.getenv("REPLAY_SUMMARY_FILE")
  if not path then return end
  local file, err = io.open(path, "w")
  if not file then
    io.stderr:write("failed to write REPLAY_SUMMARY_FILE=" .. path .. ": " .. tostring(err) .. "\n")
    return
  end
  local errors = summary.errors
  local lines = {
    "duration_us=" .. summary.duration,
    "requests=" .. summary.requests,
    "bytes=" .. summary.bytes,
    "errors_connect=" .. errors.connect,
    "errors_read=" .. errors.read,
    "errors_write=" .. errors.write,
    "errors_timeout=" .. errors.timeout,
    "errors_status=" .. errors.status,
    "latency_mean_us=" .. string.format("%.0f", latency.mean),
    "latency_max_us=" .. latency.max,
  }
  for _, percentile in ipairs({ 50, 90, 99, 99.9 }) do
    lines[#lines + 1] = string.format("latency_p%s_us=%d", tostring(percentile):gsub("%.", "_"),
                                      latency:percentile(percentile))
  end
  file:write(table.concat(lines, "\n"), "\n")
  file:close()
end
