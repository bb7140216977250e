-- wrk done() hook for benches/vs_nginx.sh: one machine-readable line with the request count,
-- the run time, latency percentiles (microseconds) and the error counters.
-- wrk counts a response with status > 399 as a "status" error; "timeout" is --timeout.
done = function(summary, latency, requests)
  local e = summary.errors
  local function pct(q)
    if summary.requests > 0 then return latency:percentile(q) end
    return -1
  end
  io.write(string.format(
    "RWBENCH requests=%d duration_us=%d bytes=%d p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%d " ..
    "connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes, pct(50), pct(90), pct(99),
    summary.requests > 0 and latency.max or -1,
    e.connect, e.read, e.write, e.status, e.timeout))
end
