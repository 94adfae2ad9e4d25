#!/usr/bin/env bash
# Makes local stand-ins for the Dockerfile's base images, under their real names, on machines
# that cannot reach an image registry (see ../shared/CONTAINERS.md). Each is made once; delete it
# (`podman rmi NAME`) to make it again.
#
# - rust:<version>-slim-trixie: Debian trixie (minbase) with gcc and this machine's Rust
#   toolchain, laid out as the official image lays it out (/usr/local/cargo, /usr/local/rustup).
# - gcr.io/distroless/cc-debian13:nonroot: made as distroless makes it, from the Debian
#   packages it holds (base: libc6, libssl3t64, ca-certificates, tzdata, netbase, base-files;
#   cc adds libgcc-s1, libgomp1, libstdc++6) unpacked with dpkg-deb, their copyright files
#   kept, plus the nonroot user (65532); no shell, no package manager.
set -euo pipefail

rust_version=$(rustc --version | awk '{print $2}')
rust_minor=${rust_version%.*}
builder="docker.io/library/rust:${rust_minor}-slim-trixie"
runtime="gcr.io/distroless/cc-debian13:nonroot"
work=${CONTAINER_BASES_WORK:-/tmp/keel-container-bases}
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
mkdir -p "$work"

if ! podman image exists "$builder"; then
    echo "== making $builder"
    rootfs="$work/rust-rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates trixie "$rootfs" "$mirror" >/dev/null
    toolchain=$(rustc --print sysroot)
    mkdir -p "$rootfs/usr/local/rustup/toolchains" "$rootfs/usr/local/cargo/bin"
    target="$rootfs/usr/local/rustup/toolchains/$(basename "$toolchain")"
    cp -a "$toolchain" "$target"
    rm -rf "$target/share/doc" "$target/lib/rustlib/src" "$target/lib/rustlib/rustc-src"
    for tool in cargo rustc rustdoc; do
        ln -s "/usr/local/rustup/toolchains/$(basename "$toolchain")/bin/$tool" "$rootfs/usr/local/cargo/bin/$tool"
    done
    # Builds here reach the registries through a TLS-inspecting proxy whose CA the host trusts:
    # the stand-in builder trusts what the host trusts, as a company's base image would.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null
    fi
    rm -rf "$rootfs/var/cache/apt/archives"/*.deb "$rootfs/var/lib/apt/lists"/*
    tar -C "$rootfs" -c . | podman import \
        --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$builder" >/dev/null
    rm -rf "$rootfs"
fi

if ! podman image exists "$runtime"; then
    echo "== making $runtime"
    apt_dir="$work/trixie-apt"
    mkdir -p "$apt_dir/lists/partial" "$work/debs"
    echo "deb $mirror trixie main" > "$apt_dir/sources.list"
    apt_options=(-o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
                 -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache::Archives="$work/debs")
    apt-get "${apt_options[@]}" update >/dev/null
    (cd "$work/debs" && rm -f ./*.deb && apt-get "${apt_options[@]}" download \
        libc6 libssl3t64 ca-certificates tzdata netbase base-files libgcc-s1 libgomp1 libstdc++6 >/dev/null)
    rootfs="$work/distroless-rootfs"
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$rootfs"; done
    # What ca-certificates' maintainer script would build: one bundle of the trusted roots.
    mkdir -p "$rootfs/etc/ssl/certs"
    cat "$rootfs"/usr/share/ca-certificates/mozilla/*.crt > "$rootfs/etc/ssl/certs/ca-certificates.crt"
    # distroless keeps each package's copyright file and no other documentation.
    find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
    rm -rf "$rootfs/usr/share/man" "$rootfs/usr/share/lintian" "$rootfs/usr/share/locale" "$rootfs/usr/share/gcc"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$rootfs/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
    mkdir -p "$rootfs/home/nonroot" "$rootfs/tmp" "$rootfs/root"
    chown 65532:65532 "$rootfs/home/nonroot"
    chmod 1777 "$rootfs/tmp"
    tar -C "$rootfs" -c . | podman import \
        --change 'USER 65532' --change 'WORKDIR /home/nonroot' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' - "$runtime" >/dev/null
    rm -rf "$rootfs"
fi
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "rust|distroless"
