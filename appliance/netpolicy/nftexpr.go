package netpolicy

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The expressions the rules are made of, each the netlink form of a short
// piece of nft syntax (named in the comment before it). Register 1 holds
// what is compared or looked up.

const reg = 1

// ifname pads an interface name as the kernel compares it (IFNAMSIZ).
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func addr4(a netip.Addr) []byte { b := a.As4(); return b[:] }

// meta iifname / oifname <op> name
func ifnameCmp(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: reg},
		&expr.Cmp{Op: op, Register: reg, Data: ifname(name)},
	}
}

// meta nfproto ipv4
func isIPv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// meta nfproto != ipv4
func notIPv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// ip saddr (offset 12) or ip daddr (offset 16) into the register.
const (
	offSaddr = 12
	offDaddr = 16
)

func loadIP(offset uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}
}

// ip saddr/daddr == a
func ipCmp(offset uint32, op expr.CmpOp, a netip.Addr) []expr.Any {
	return []expr.Any{loadIP(offset), &expr.Cmp{Op: op, Register: reg, Data: addr4(a)}}
}

// ip saddr/daddr <op> p (a network)
func ipInPrefix(offset uint32, op expr.CmpOp, p netip.Prefix) []expr.Any {
	mask := binaryutil.BigEndian.PutUint32(^uint32(0) << (32 - p.Bits()))
	return []expr.Any{
		loadIP(offset),
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: reg, Data: addr4(p.Masked().Addr())},
	}
}

// ip saddr/daddr @set
func ipInSet(offset uint32, set string) []expr.Any {
	return []expr.Any{loadIP(offset), &expr.Lookup{SourceRegister: reg, SetName: set}}
}

// meta l4proto proto th dport port
func dport(proto uint8, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{proto}},
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: be16(port)},
	}
}

// ct state established,related
func ctEstablished() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg},
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: make([]byte, 4)},
	}
}

// ct mark == mark
func ctMarkIs(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: binaryutil.NativeEndian.PutUint32(mark)},
	}
}

// ct mark set mark
func ctMarkSet(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: reg, Data: binaryutil.NativeEndian.PutUint32(mark)},
		&expr.Ct{Key: expr.CtKeyMARK, Register: reg, SourceRegister: true},
	}
}

// <key> vmap @set (the key is already in the register)
func vmap(set string) *expr.Lookup {
	return &expr.Lookup{SourceRegister: reg, SetName: set, IsDestRegSet: true, DestRegister: 0}
}

// meta protocol (the frame's ethertype, in the bridge family) <op> proto
func etherType(op expr.CmpOp, proto uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: reg},
		&expr.Cmp{Op: op, Register: reg, Data: be16(proto)},
	}
}

var (
	accept = &expr.Verdict{Kind: expr.VerdictAccept}
	drop   = &expr.Verdict{Kind: expr.VerdictDrop}
	// reject with icmpx admin-prohibited: the agent learns at once that
	// the policy refused it instead of waiting for a timeout.
	reject = &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}
)

func jump(chain string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func one(e ...expr.Any) []expr.Any { return e }
