--- Koma for Neovim: starts `koma lsp` through `vim.lsp.config`/`vim.lsp.enable` and wires the
--- editor features (ghost text, chat, code actions, status) to the protocol of docs/protocol.md.
--- No model logic lives here: every answer comes from the server.

local M = {}

---@type koma.ResolvedConfig?
M.config = nil
--- The options last given to setup() (:KomaInstall re-runs setup with them).
---@type table?
M.opts = nil
--- Where the server was found at the last setup() (see koma.server).
---@type koma.Found?
M.found = nil

local NAME = 'koma'
local group = vim.api.nvim_create_augroup('koma', { clear = true })

local function notify(msg, level)
  vim.notify('Koma: ' .. msg, level or vim.log.levels.INFO)
end
M.notify = notify

--- Decide the project root; buffers without a file name get no server.
---@param markers string[]
local function root_dir(markers)
  return function(bufnr, on_dir)
    local name = vim.api.nvim_buf_get_name(bufnr)
    if name == '' or name:match('^%a+://') then
      return
    end
    on_dir(vim.fs.root(bufnr, markers) or vim.fs.dirname(name))
  end
end

--- Server → client handlers. Looked up lazily so modules load only when used.
local function handlers()
  return {
    ['koma/chat/event'] = function(_, params, ctx)
      require('koma.chat').on_event(params, ctx)
    end,
    ['koma/status'] = function(_, params, ctx)
      require('koma.status').on_status(params, ctx)
    end,
    ['koma/untrustedConfig'] = function(_, params, ctx)
      require('koma.trust').on_untrusted(params, ctx)
    end,
    ['window/showMessageRequest'] = function(err, params, ctx)
      return require('koma.actions').confirm(err, params, ctx)
    end,
    ['workspace/applyEdit'] = function(err, params, ctx)
      return require('koma.actions').apply_edit(err, params, ctx)
    end,
  }
end

--- Find the server program for `cfg` (the `cmd` option, else the search of koma.server, from
--- the project around the current directory).
---@param cfg koma.ResolvedConfig
---@return koma.Found
function M.find_server(cfg)
  local p = cfg.plugin
  if type(p.cmd) == 'function' then
    return { cmd = nil, fn = p.cmd, source = 'the cmd option', looked = {}, skipped = {} }
  end
  local cwd = vim.fn.getcwd()
  return require('koma.server').find({
    cmd = p.cmd,
    root = vim.fs.root(cwd, p.root_markers) or cwd,
    workspace_venv = p.workspace_venv,
  })
end

--- The `vim.lsp.Config` Koma registers for `cfg`.
---@param cfg koma.ResolvedConfig
---@param found koma.Found? the server found (searched when nil)
---@return vim.lsp.Config
function M.lsp_config(cfg, found)
  local p = cfg.plugin
  found = found or M.find_server(cfg)
  local capabilities = nil
  if require('koma.inline').backend() == 'extmark' and not vim.lsp.inline_completion then
    -- Neovim 0.11 does not declare inline completion; the extmark renderer handles it, so
    -- tell the server not to fall back to the completion menu.
    capabilities = vim.tbl_deep_extend('force', vim.lsp.protocol.make_client_capabilities(), {
      textDocument = { inlineCompletion = { dynamicRegistration = false } },
    })
  end
  return {
    cmd = found.fn or found.cmd,
    cmd_env = p.cmd_env,
    filetypes = p.filetypes,
    root_dir = root_dir(p.root_markers),
    -- trustPrompt: the server asks about an untrusted .koma.toml with koma/untrustedConfig
    -- (answered in koma.trust) instead of a plain warning.
    init_options = { koma = cfg.server, client = { trustPrompt = true } },
    settings = { koma = cfg.server },
    capabilities = capabilities,
    handlers = handlers(),
    commands = {
      -- Explain streams into the chat window, so open it before the server starts talking.
      ['koma.explain'] = function(command, ctx)
        require('koma.chat').run_command(command, ctx)
      end,
    },
  }
end

--- Configure and start Koma. Safe to call again: running servers get the new settings.
---@param opts table? plugin options and server settings (see `:help koma-options`)
function M.setup(opts)
  local ok, cfg = pcall(require('koma.config').resolve, opts)
  if not ok then
    notify('invalid setup(): ' .. tostring(cfg), vim.log.levels.ERROR)
    return
  end
  M.config = cfg
  M.opts = opts
  if vim.fn.has('nvim-0.11') == 0 then
    notify('needs Neovim 0.11 or newer', vim.log.levels.ERROR)
    return
  end
  local found = M.find_server(cfg)
  M.found = found
  if not found.cmd and not found.fn then
    require('koma.commands').create()
    notify(require('koma.server').not_found_message(found), vim.log.levels.WARN)
    return
  end
  vim.lsp.config[NAME] = M.lsp_config(cfg, found)

  vim.api.nvim_clear_autocmds({ group = group })
  vim.api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == NAME then
        require('koma.inline').attach(args.buf, client)
      end
    end,
  })
  vim.api.nvim_create_autocmd('LspDetach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == NAME then
        require('koma.inline').detach(args.buf)
      end
    end,
  })
  require('koma.status').setup(group)
  require('koma.commands').create()

  for _, client in ipairs(vim.lsp.get_clients({ name = NAME })) do
    client.settings = { koma = cfg.server }
    client:notify('workspace/didChangeConfiguration', { settings = { koma = cfg.server } })
  end
  if cfg.plugin.auto_start then
    vim.lsp.enable(NAME)
  end
end

--- Search for the server again (e.g. after :KomaInstall) and restart Koma with it.
function M.restart()
  vim.lsp.enable(NAME, false)
  for _, client in ipairs(vim.lsp.get_clients({ name = NAME })) do
    client:stop(true)
  end
  M.setup(M.opts)
  if M.found and (M.found.cmd or M.found.fn) then
    vim.lsp.enable(NAME, true)
  end
end

--- The Koma client for `bufnr` (default: current buffer), else any running Koma client.
---@param bufnr integer?
---@return vim.lsp.Client?
function M.client(bufnr)
  local attached = vim.lsp.get_clients({ name = NAME, bufnr = bufnr or 0 })
  if attached[1] then
    return attached[1]
  end
  return vim.lsp.get_clients({ name = NAME })[1]
end

--- A Koma client, starting one for the current directory when none runs (e.g. `:Koma chat`
--- before any file is open).
---@return vim.lsp.Client?
function M.ensure_client()
  local client = M.client()
  if client then
    return client
  end
  if not M.config then
    M.setup({})
    if not M.config then
      return nil
    end
  end
  if not vim.lsp.config[NAME] or not vim.lsp.config[NAME].cmd then
    return nil
  end
  local config = vim.deepcopy(vim.lsp.config[NAME])
  local cwd = vim.fn.getcwd()
  config.name = NAME
  config.root_dir = vim.fs.root(cwd, M.config.plugin.root_markers) or cwd
  local id = vim.lsp.start(config, { attach = false })
  return id and vim.lsp.get_client_by_id(id) or nil
end

--- Call `fn` once `client` has finished initializing (gives up after 30 s or if it stops).
---@param client vim.lsp.Client
---@param fn fun()
function M.when_ready(client, fn)
  local deadline = vim.uv.now() + 30000
  local function poll()
    if client.initialized then
      fn()
    elseif client:is_stopped() or vim.uv.now() > deadline then
      notify('the server did not start; see :checkhealth koma', vim.log.levels.ERROR)
    else
      vim.defer_fn(poll, 50)
    end
  end
  poll()
end

--- Run a `workspace/executeCommand` of docs/protocol.md.
---@param command string e.g. "koma.models"
---@param arguments table
---@param on_result fun(err: lsp.ResponseError?, result: any)?
---@param bufnr integer?
---@return integer? request id
function M.command(command, arguments, on_result, bufnr)
  local client = M.ensure_client()
  if not client then
    notify('the server is not running; see :checkhealth koma', vim.log.levels.ERROR)
    return nil
  end
  if not client.initialized then
    -- A client started just now: send once `initialize` has been answered.
    M.when_ready(client, function()
      M.command(command, arguments, on_result, bufnr)
    end)
    return nil
  end
  local ok, id = client:request('workspace/executeCommand', {
    command = command,
    arguments = arguments,
  }, function(err, result)
    if on_result then
      on_result(err, result)
    elseif err then
      notify(command .. ': ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
    end
  end, bufnr)
  return ok and id or nil
end

--- Accept the visible ghost text; false when there is none.
function M.accept()
  return require('koma.inline').accept()
end

return M
