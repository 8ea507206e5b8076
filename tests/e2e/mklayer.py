#!/usr/bin/env python3
"""Write a layer tarball for the template tests: `mklayer.py OUT.tar SPEC.json`.

SPEC is a JSON list of entries {name, type: file|dir|symlink|hardlink|whiteout|opaque|chardev, data?,
link?, mode?, uid?, gid?, size_random?}. Names are written exactly as given (hostile ones included), so the
tests can check that cubed refuses `..`, absolute paths and symlink escapes."""
import io
import json
import os
import sys
import tarfile


def main():
    out, spec = sys.argv[1], json.load(open(sys.argv[2]))
    with tarfile.open(out, 'w', format=tarfile.PAX_FORMAT) as t:
        for e in spec:
            name, typ = e['name'], e.get('type', 'file')
            if typ == 'whiteout':
                d, b = os.path.split(name)
                name, typ = os.path.join(d, '.wh.' + b), 'file'
            elif typ == 'opaque':
                name, typ = os.path.join(name, '.wh..wh..opq'), 'file'
            ti = tarfile.TarInfo(name)
            ti.mode = e.get('mode', 0o755 if typ == 'dir' else 0o644)
            ti.uid, ti.gid = e.get('uid', 0), e.get('gid', 0)
            data = None
            if typ == 'file':
                data = os.urandom(e['size_random']) if 'size_random' in e else e.get('data', '').encode()
                ti.size = len(data)
            elif typ == 'dir':
                ti.type = tarfile.DIRTYPE
            elif typ == 'symlink':
                ti.type, ti.linkname = tarfile.SYMTYPE, e['link']
            elif typ == 'hardlink':
                ti.type, ti.linkname = tarfile.LNKTYPE, e['link']
            elif typ == 'chardev':
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
            t.addfile(ti, io.BytesIO(data) if data is not None else None)


main()
