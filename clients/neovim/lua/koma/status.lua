--- Statusline component and `:Koma status`, fed by the server's `koma/status` notifications
--- (model, state, tokens/s) and by `$/progress` while a model loads.
---
--- Use it in a statusline: `set statusline+=%{v:lua.require'koma.status'.statusline()}`
--- or in lualine: `sections = { lualine_x = { require('koma.status').statusline } }`.

local M = {}

---@class koma.Status
---@field state "idle"|"loading"|"generating"|"error"|"starting"
---@field model string?
---@field tokensPerSecond number?
---@field ttftMs number?
---@field message string?
---@field progress string? last `$/progress` message

---@type koma.Status
M.current = { state = 'starting' }

local icons = { idle = '✓', loading = '…', generating = '⚡', error = '✗', starting = '…' }

local function changed()
  vim.cmd.redrawstatus({ bang = true })
  vim.api.nvim_exec_autocmds('User', { pattern = 'KomaStatus', modeline = false })
end

--- Handler of the `koma/status` notification.
---@param params table
function M.on_status(params, _)
  if type(params) ~= 'table' or type(params.state) ~= 'string' then
    return
  end
  local keep = M.current
  -- JSON null arrives as vim.NIL; treat it as "not known".
  local function get(key, kind)
    local v = params[key]
    return type(v) == kind and v or nil
  end
  M.current = {
    state = params.state,
    model = get('model', 'string') or keep.model,
    tokensPerSecond = get('tokensPerSecond', 'number') or keep.tokensPerSecond,
    ttftMs = get('ttftMs', 'number') or keep.ttftMs,
    message = get('message', 'string'),
    progress = keep.progress,
  }
  if params.state == 'error' and params.message and params.message ~= keep.message then
    vim.notify('Koma: ' .. params.message, vim.log.levels.WARN)
  end
  changed()
end

--- Listen for server progress (model loading) and stopped servers.
---@param group integer augroup owned by setup()
function M.setup(group)
  vim.api.nvim_create_autocmd('LspProgress', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if not client or client.name ~= 'koma' then
        return
      end
      local value = args.data.params and args.data.params.value or {}
      if value.kind == 'end' then
        M.current.progress = nil
      else
        local pct = value.percentage and (' %d%%'):format(value.percentage) or ''
        M.current.progress = (value.title or value.message or 'working') .. pct
      end
      changed()
    end,
  })
  vim.api.nvim_create_autocmd('LspDetach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == 'koma' and #vim.lsp.get_clients({ name = 'koma' }) <= 1 then
        M.current = { state = 'starting' }
        changed()
      end
    end,
  })
end

--- A short statusline string: "Koma ⚡ gpt-oss:120b 31.5 tok/s"; empty without a server.
---@return string
function M.statusline()
  if #vim.lsp.get_clients({ name = 'koma' }) == 0 then
    return ''
  end
  local s = M.current
  local parts = { 'Koma', icons[s.state] or s.state }
  if s.model then
    parts[#parts + 1] = s.model
  end
  if s.progress then
    parts[#parts + 1] = s.progress
  elseif s.state == 'error' then
    parts[#parts + 1] = 'error'
  elseif s.tokensPerSecond then
    parts[#parts + 1] = ('%.1f tok/s'):format(s.tokensPerSecond)
  end
  return table.concat(parts, ' ')
end

--- `:Koma status`: ask the server (`koma.status`) and print provider, model and state.
function M.show()
  require('koma').command('koma.status', {}, function(err, result)
    if err then
      vim.notify('Koma: ' .. (err.message or 'status failed'), vim.log.levels.ERROR)
      return
    end
    result = type(result) == 'table' and result or {}
    local function str(key, default)
      local v = result[key]
      return (type(v) == 'string' or type(v) == 'number') and tostring(v) or default
    end
    local lines = {
      ('provider: %s  %s'):format(str('provider', 'auto'), str('baseUrl', '(default address)')),
      ('model: %s'):format(str('model', M.current.model or '(server default)')),
      ('state: %s%s'):format(
        str('state', M.current.state),
        str('message') and (' — ' .. str('message')) or ''
      ),
    }
    if type(result.tokensPerSecond) == 'number' then
      lines[#lines + 1] = ('speed: %.1f tok/s, first token %s ms'):format(
        result.tokensPerSecond,
        str('ttftMs', '?')
      )
    end
    local route = result.completionRoute
    if type(route) == 'table' and type(route.route) == 'string' then
      -- How ghost text asks the completion model, and why (protocol.md: koma.status).
      lines[#lines + 1] = ('completion: %s via %s — %s'):format(
        route.route,
        type(route.endpoint) == 'string' and route.endpoint or route.route,
        type(route.why) == 'string' and route.why or ''
      )
    end
    vim.notify(table.concat(lines, '\n'), vim.log.levels.INFO, { title = 'Koma' })
  end)
end

return M
