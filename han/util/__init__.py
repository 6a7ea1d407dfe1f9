"""Process and file plumbing with no ML in it; it imports only `han.errors`.

`atomic` writes han's files (temporary name, fsync, rename); `hashing` is the one SHA-256 helper;
`yaml_strict` loads YAML safely with duplicate keys refused; `files` refuses a named file that is not a
regular file (a pipe, a device, a folder) or is too large, before anything reads it; `signals` turns
SIGINT/SIGTERM into a stop request (or holds it across writes that belong together); `cpus` sizes torch's
threads to the free cores; `allocator` keeps freed memory for reuse; `forked` shares work out to forked
worker processes; `memory` measures the peak resident memory of a block (a stage) and of the process;
`device` picks where a model runs and its mixed precision; `lock` lets one process at a time write into a
folder (an advisory flock, never stale); `distribution` names what han installs as (`han-classifier`) and
its installed version; `paths` tells a file path from a hub id and reads a config's relative paths from
its folder.
"""
