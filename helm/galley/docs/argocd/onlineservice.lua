-- Argo CD health of a Galley OnlineService, read from the status its operator writes. A stopped
-- service (autoStop, idle, spec.stopped) is Suspended: it keeps its configuration and starts again.
local function condition(status, kind)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == kind then return c end
  end
  return nil
end
local function said(c, otherwise)
  if c == nil then return otherwise end
  if c.message ~= nil and c.message ~= "" then return c.reason .. ": " .. c.message end
  return c.reason or otherwise
end
local broken = {NameConflict = true, ChildRejected = true, CrashLoopBackOff = true, InvalidSpec = true}
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Galley operator"
  return hs
end
local ready = condition(status, "Ready")
local stopped = condition(status, "Stopped")
if status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = said(ready, "Failed")
elseif status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Galley operator to see generation " .. obj.metadata.generation
elseif status.phase == "Stopped" or (stopped ~= nil and stopped.status == "True") then
  hs.status = "Suspended"
  hs.message = said(stopped, "Stopped")
elseif status.phase == "Running" and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = said(ready, "Serving")
elseif ready ~= nil and broken[ready.reason] then
  hs.status = "Degraded"
  hs.message = said(ready, "Not ready")
else
  hs.status = "Progressing"
  hs.message = said(ready, "Rolling out")
end
return hs
