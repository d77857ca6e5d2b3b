-- Argo CD health of a Galley Model, read from the status its operator writes.
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
local waiting = {TrainingJobNotFound = true, TrainingJobNotFinished = true}
local hs = {}
local status = obj.status
local ready = status and condition(status, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Galley operator"
elseif status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Galley operator to see generation " .. obj.metadata.generation
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = said(ready, "Ready")
  local source = condition(status, "SourceAvailable")
  if source ~= nil and source.status == "False" then
    hs.message = hs.message .. " (" .. said(source, "") .. ")"
  end
elseif waiting[ready.reason] then
  hs.status = "Progressing"
  hs.message = said(ready, "Waiting for its TrainingJob")
else
  hs.status = "Degraded"
  hs.message = said(ready, "Not ready")
end
return hs
