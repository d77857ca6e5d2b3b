-- Argo CD health of a Galley TrainingJob, read from the status its operator writes.
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
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Galley operator"
  return hs
end
local created = condition(status, "Created")
local running = condition(status, "Running")
if status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = said(condition(status, "Succeeded"), "Succeeded")
elseif status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = said(condition(status, "Failed"), "Failed")
elseif status.phase == "Running" then
  hs.status = "Progressing"
  hs.message = said(running, "Training")
elseif created ~= nil and created.status == "False"
    and (created.reason == "NameConflict" or created.reason == "ChildRejected") then
  hs.status = "Degraded"
  hs.message = said(created, "The trainer cannot be created")
elseif running ~= nil and running.reason == "ImagePullBackOff" then
  hs.status = "Degraded"
  hs.message = said(running, "The trainer's image cannot be pulled")
else
  hs.status = "Progressing"
  if running ~= nil and running.message ~= nil and running.message ~= "" then
    hs.message = said(running, "Pending")
  elseif created ~= nil and created.status == "False" then
    hs.message = said(created, "Pending")
  else
    hs.message = "Pending: the trainer has not started yet"
  end
end
return hs
