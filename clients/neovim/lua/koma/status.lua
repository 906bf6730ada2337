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
  M.current = {
    state = params.state,
    model = params.model or keep.model,
    tokensPerSecond = params.tokensPerSecond or keep.tokensPerSecond,
    ttftMs = params.ttftMs or keep.ttftMs,
    message = params.message,
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
    result = result or {}
    local lines = {
      ('provider: %s  %s'):format(tostring(result.provider), tostring(result.baseUrl or '')),
      ('model: %s'):format(tostring(result.model or M.current.model or '?')),
      ('state: %s%s'):format(
        tostring(result.state or M.current.state),
        result.message and (' — ' .. result.message) or ''
      ),
    }
    if result.tokensPerSecond then
      lines[#lines + 1] = ('speed: %.1f tok/s, first token %s ms'):format(
        result.tokensPerSecond,
        tostring(result.ttftMs or '?')
      )
    end
    vim.notify(table.concat(lines, '\n'), vim.log.levels.INFO, { title = 'Koma' })
  end)
end

return M
