--- The :Koma command and its subcommands (with completion).

local M = {}

local function notify(msg, level)
  vim.notify('Koma: ' .. msg, level or vim.log.levels.INFO)
end

local function pick_model(kind)
  require('koma').command('koma.models', {}, function(err, result)
    if err or type(result) ~= 'table' then
      notify(err and err.message or 'no models', vim.log.levels.ERROR)
      return
    end
    if type(result.error) == 'string' then
      notify(result.error, vim.log.levels.ERROR)
      return
    end
    local current = type(result.current) == 'table' and result.current or {}
    local active = kind == 'completion' and current.completionModel or current.model
    active = type(active) == 'string' and active or 'the server default'
    vim.ui.select(type(result.models) == 'table' and result.models or {}, {
      prompt = ('Koma %s model (now %s)'):format(kind, active),
      format_item = function(m)
        local size = type(m.sizeBytes) == 'number' and ('%.1f GB'):format(m.sizeBytes / 1e9)
        local quant = type(m.quantization) == 'string' and m.quantization
        local parts = { tostring(m.name) }
        for _, part in ipairs({ size, quant, m.loaded == true and 'loaded', m.name == active and '(current)' }) do
          if part then
            parts[#parts + 1] = part
          end
        end
        return table.concat(parts, '  ')
      end,
    }, function(choice)
      if choice then
        require('koma').command(
          'koma.selectModel',
          { { model = choice.name, kind = kind } },
          function(e, r)
            if e or type(r) ~= 'table' or type(r.error) == 'string' then
              notify(e and e.message or r and r.error or 'could not select the model', vim.log.levels.ERROR)
            else
              notify(('chat model %s, completion model %s'):format(
                tostring(r and r.model),
                tostring(r and r.completionModel)
              ))
            end
          end
        )
      end
    end)
  end)
end

local function lifecycle(command, model)
  require('koma').command(command, { { model = model ~= '' and model or nil } }, function(err, r)
    if err then
      notify(err.message or command .. ' failed', vim.log.levels.ERROR)
    else
      notify(r and r.message or 'done', r and r.ok == false and vim.log.levels.WARN or nil)
    end
  end)
end

---@type table<string, fun(args: string, o: table)>
local subcommands = {
  chat = function(args, o)
    local chat = require('koma.chat')
    if args == '' then
      chat.open()
      return
    end
    local opts = {}
    if o.range > 0 then
      local client = require('koma').client()
      local encoding = client and client.offset_encoding or 'utf-16'
      opts.uri = vim.uri_from_bufnr(0)
      opts.range = require('koma.actions').lsp_range(0, o.line1, o.line2, encoding)
    end
    chat.send(args, opts)
  end,
  new = function()
    require('koma.chat').new()
    require('koma.chat').open()
  end,
  models = function(args)
    pick_model(args == 'completion' and 'completion' or 'chat')
  end,
  preload = function(args)
    lifecycle('koma.preload', args)
  end,
  unload = function(args)
    lifecycle('koma.unload', args)
  end,
  cancel = function()
    local a = require('koma.actions').cancel()
    local c = require('koma.chat').cancel()
    if not a and not c then
      notify('nothing to cancel')
    end
  end,
  status = function()
    require('koma.status').show()
  end,
  toggle = function()
    local on = require('koma.inline').toggle()
    notify('ghost text ' .. (on and 'on' or 'off'))
  end,
  ['clear-cache'] = function()
    require('koma').command('koma.clearCache', {}, function(err, r)
      notify(err and err.message or ('cleared %d cached answers'):format(r and r.cleared or 0))
    end)
  end,
  restart = function()
    vim.lsp.enable('koma', false)
    vim.lsp.enable('koma', true)
  end,
}
for _, name in ipairs({ 'explain', 'refactor', 'docstring', 'tests', 'fix' }) do
  subcommands[name] = function(_, o)
    require('koma.actions').run(name, o.line1, o.line2)
  end
end

--- Define :Koma (idempotent; setup() calls it too, for installs that add the plugin to
--- 'runtimepath' after startup).
function M.create()
  vim.api.nvim_create_user_command('Koma', function(o)
    local name, args = o.args:match('^(%S*)%s*(.-)%s*$')
    if name == '' then
      name = 'chat'
    end
    local fn = subcommands[name]
    if not fn then
      notify(('unknown subcommand %q'):format(name), vim.log.levels.ERROR)
      return
    end
    fn(args, o)
  end, {
    nargs = '*',
    range = true,
    desc = 'Koma: chat, explain, refactor, docstring, tests, fix, models, preload, …',
    complete = function(arg_lead, cmdline)
      local words = vim.split(cmdline:gsub("^%A*Koma!?%s*", ''), '%s+')
      if #words <= 1 then
        local names = vim.tbl_keys(subcommands)
        table.sort(names)
        return vim.tbl_filter(function(n)
          return n:find(arg_lead, 1, true) == 1
        end, names)
      end
      if words[1] == 'models' then
        return { 'chat', 'completion' }
      end
      return {}
    end,
  })
  vim.api.nvim_create_user_command('KomaInstall', function(o)
    local koma = require('koma')
    local plugin = koma.config and koma.config.plugin or require('koma.config').plugin_defaults
    require('koma.server').install({
      embedded = o.args == 'embedded',
      source = plugin.install and plugin.install.source,
      python = plugin.install and plugin.install.python,
    })
  end, {
    nargs = '?',
    complete = function()
      return { 'embedded' }
    end,
    desc = 'Koma: install the server into a private virtual environment (embedded: with the embedded model)',
  })
end

return M
