; Inno Setup 6 script: wraps the PyInstaller onedir folder (dist\advgui) in a Windows installer.
; NOT RUN HERE (no Windows machine was available); written from the Inno Setup documentation
; (https://jrsoftware.org/ishelp/) to mirror the Linux .deb: install the folder, a Start menu
; entry, optionally a desktop icon and the console program on PATH.
;
; On Windows, from the repository root, with Python 3.10+ and Inno Setup 6 installed:
;   py -m venv build\venv
;   build\venv\Scripts\python -m pip install ".[package]"
;   build\venv\Scripts\python -m pip uninstall -y advgui
;   set ADVGUI_BUNDLE_MNIST=C:\path\to\mnist        (optional: bundle MNIST for offline labs)
;   build\venv\Scripts\pyinstaller --noconfirm --distpath dist --workpath build\pyinstaller packaging\advgui.spec
;   dist\advgui\advgui-cli.exe selftest             (the smoke test: must print "selftest: PASSED")
;   for /f %v in ('build\venv\Scripts\python -c "import advgui; print(advgui.__version__)"') do set V=%v
;   "%ProgramFiles(x86)%\Inno Setup 6\ISCC.exe" /DAppVersion=%V% packaging\windows\advgui.iss
; The spec builds advgui.exe (the window, no console) and advgui-cli.exe (the same program with
; a console, for `advgui-cli selftest`, `advgui-cli train ...`).

; The version is written only in advgui/__init__.py: pass it, as above.
#ifndef AppVersion
  #error Pass /DAppVersion=VERSION, the __version__ of advgui/__init__.py
#endif
#define AppName "advgui"
#define DistDir "..\..\dist\advgui"

[Setup]
; A fixed AppId keeps upgrades and the uninstaller tied to one product.
AppId={{6C1F3E52-8A4B-4C7D-9E21-5B0D7A3F9C64}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=advgui developers
AppComments=Desktop workbench for adversarial machine learning on MNIST
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Lab machines: install for all users; an admin may still choose a per-user install.
PrivilegesRequired=admin
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename={#AppName}-{#AppVersion}-windows-x64-setup
; About 1 GB of TensorFlow: LZMA2 in a separate process keeps the compiler's memory in bounds.
Compression=lzma2/normal
SolidCompression=yes
LZMAUseSeparateProcess=yes
DiskSpanning=no
WizardStyle=modern
UninstallDisplayIcon={app}\advgui.exe
UninstallDisplayName={#AppName} {#AppVersion}
; The PATH change below must reach running Explorer/shells.
ChangesEnvironment=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add advgui-cli to PATH (command line use, e.g. advgui-cli selftest)"; GroupDescription: "Command line:"

[Files]
Source: "{#DistDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\advgui.exe"; Comment: "Adversarial MNIST workbench"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\advgui.exe"; Tasks: desktopicon

[Registry]
; Machine-wide PATH entry (per-user installs write HKCU instead: see {autopf}/HKA in the docs).
Root: HKA; Subkey: "{code:EnvKey}"; ValueType: expandsz; ValueName: "Path"; \
  ValueData: "{olddata};{app}"; Tasks: addtopath; Check: NeedsAddPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\advgui.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; PyInstaller writes nothing into {app} at run time; user data lives in %LOCALAPPDATA%\advgui.
Type: filesandordirs; Name: "{app}\_internal\__pycache__"

[Code]
function EnvKey(Param: String): String;
begin
  if IsAdminInstallMode then
    Result := 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment'
  else
    Result := 'Environment';
end;

function NeedsAddPath(Dir: String): Boolean;
var
  OrigPath: String;
  RootKey: Integer;
begin
  if IsAdminInstallMode then
    RootKey := HKEY_LOCAL_MACHINE
  else
    RootKey := HKEY_CURRENT_USER;
  if not RegQueryStringValue(RootKey, EnvKey(''), 'Path', OrigPath) then
  begin
    Result := True;
    exit;
  end;
  { Look for the folder with leading and trailing separators, so C:\x does not match C:\xy. }
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(OrigPath) + ';') = 0;
end;

procedure RemovePath(Dir: String);
var
  OrigPath, Entry: String;
  RootKey, P: Integer;
begin
  if IsAdminInstallMode then
    RootKey := HKEY_LOCAL_MACHINE
  else
    RootKey := HKEY_CURRENT_USER;
  if not RegQueryStringValue(RootKey, EnvKey(''), 'Path', OrigPath) then
    exit;
  Entry := ';' + Dir;
  P := Pos(Uppercase(Entry), Uppercase(OrigPath));
  if P > 0 then
  begin
    Delete(OrigPath, P, Length(Entry));
    RegWriteExpandStringValue(RootKey, EnvKey(''), 'Path', OrigPath);
  end;
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usPostUninstall then
    RemovePath(ExpandConstant('{app}'));
end;
