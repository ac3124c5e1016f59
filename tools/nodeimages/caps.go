package nodeimages

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// capNumbers are Linux capability numbers (include/uapi/linux/capability.h).
var capNumbers = map[string]uint{
	"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4,
	"KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9,
	"NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13,
	"IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17,
	"SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21,
	"SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
	"SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29,
	"AUDIT_CONTROL": 30, "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33,
	"SYSLOG": 34, "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36, "AUDIT_READ": 37,
	"PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

const (
	vfsCapRevision2     = 0x02000000
	vfsCapFlagEffective = 0x000001
)

// capabilityXattr is the security.capability value `setcap caps=+ep`
// writes: struct vfs_cap_data revision 2 (no namespace root uid), all
// capabilities permitted and effective, none inheritable.
func capabilityXattr(caps []string) ([]byte, error) {
	var set uint64
	for _, c := range caps {
		n, ok := capNumbers[strings.TrimPrefix(strings.ToUpper(c), "CAP_")]
		if !ok {
			return nil, fmt.Errorf("unknown capability %q", c)
		}
		set |= 1 << n
	}
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], vfsCapRevision2|vfsCapFlagEffective)
	binary.LittleEndian.PutUint32(b[4:], uint32(set))      // permitted, low word
	binary.LittleEndian.PutUint32(b[12:], uint32(set>>32)) // permitted, high word
	return b, nil
}
