/*
 * vdpad_vhost_abi.h — the kernel's vhost / vhost-vdpa ABI as of Linux 6.8
 * (include/uapi/linux/vhost.h, vhost_types.h), written out here because the
 * build machine's headers (Debian 12: 6.1) lack the 6.7 additions
 * (GET_VRING_DESC_GROUP) and the library must not depend on their version.
 * Numbers and layouts are the kernel's uapi (docs/kernel-rules.md cites
 * the rules); _Static_asserts pin the sizes.
 */
#ifndef VDPAD_VHOST_ABI_H
#define VDPAD_VHOST_ABI_H

#include <stdint.h>
#include <sys/ioctl.h>

#define VHOST_VIRTIO 0xAF

struct vhost_vring_state { uint32_t index; uint32_t num; };
struct vhost_vring_file { uint32_t index; int fd; };
struct vhost_vring_addr {
    uint32_t index, flags;
    uint64_t desc_user_addr, used_user_addr, avail_user_addr, log_guest_addr;
};
struct vhost_vdpa_config { uint32_t off; uint32_t len; uint8_t buf[]; };
struct vhost_vdpa_iova_range { uint64_t first; uint64_t last; };
struct vhost_memory_region { uint64_t guest_phys_addr, memory_size, userspace_addr, flags_padding; };
struct vhost_memory { uint32_t nregions; uint32_t padding; struct vhost_memory_region regions[]; };

struct vhost_iotlb_msg {
    uint64_t iova, size, uaddr;
    uint8_t perm, type;
    uint8_t reserved[6];
};
struct vhost_msg_v2 {
    uint32_t type, asid;
    union { struct vhost_iotlb_msg iotlb; uint8_t padding[64]; };
};

_Static_assert(sizeof(struct vhost_vring_addr) == 40, "vhost_vring_addr");
_Static_assert(sizeof(struct vhost_iotlb_msg) == 32, "vhost_iotlb_msg");
_Static_assert(sizeof(struct vhost_msg_v2) == 72, "vhost_msg_v2");

#define VHOST_IOTLB_MSG 0x1
#define VHOST_IOTLB_MSG_V2 0x2
#define VHOST_IOTLB_MISS 1
#define VHOST_IOTLB_UPDATE 2
#define VHOST_IOTLB_INVALIDATE 3
#define VHOST_IOTLB_ACCESS_FAIL 4
#define VHOST_IOTLB_BATCH_BEGIN 5
#define VHOST_IOTLB_BATCH_END 6
#define VHOST_BACKEND_F_IOTLB_ASID 3

#define VHOST_GET_FEATURES _IOR(VHOST_VIRTIO, 0x00, uint64_t)
#define VHOST_SET_FEATURES _IOW(VHOST_VIRTIO, 0x00, uint64_t)
#define VHOST_SET_OWNER _IO(VHOST_VIRTIO, 0x01)
#define VHOST_RESET_OWNER _IO(VHOST_VIRTIO, 0x02)
#define VHOST_SET_MEM_TABLE _IOW(VHOST_VIRTIO, 0x03, struct vhost_memory)
#define VHOST_SET_LOG_BASE _IOW(VHOST_VIRTIO, 0x04, uint64_t)
#define VHOST_SET_LOG_FD _IOW(VHOST_VIRTIO, 0x07, int)
#define VHOST_SET_VRING_NUM _IOW(VHOST_VIRTIO, 0x10, struct vhost_vring_state)
#define VHOST_SET_VRING_ADDR _IOW(VHOST_VIRTIO, 0x11, struct vhost_vring_addr)
#define VHOST_SET_VRING_BASE _IOW(VHOST_VIRTIO, 0x12, struct vhost_vring_state)
#define VHOST_GET_VRING_BASE _IOWR(VHOST_VIRTIO, 0x12, struct vhost_vring_state)
#define VHOST_SET_VRING_KICK _IOW(VHOST_VIRTIO, 0x20, struct vhost_vring_file)
#define VHOST_SET_VRING_CALL _IOW(VHOST_VIRTIO, 0x21, struct vhost_vring_file)
#define VHOST_SET_VRING_ERR _IOW(VHOST_VIRTIO, 0x22, struct vhost_vring_file)
#define VHOST_SET_VRING_BUSYLOOP_TIMEOUT _IOW(VHOST_VIRTIO, 0x23, struct vhost_vring_state)
#define VHOST_GET_VRING_BUSYLOOP_TIMEOUT _IOW(VHOST_VIRTIO, 0x24, struct vhost_vring_state)
#define VHOST_SET_BACKEND_FEATURES _IOW(VHOST_VIRTIO, 0x25, uint64_t)
#define VHOST_GET_BACKEND_FEATURES _IOR(VHOST_VIRTIO, 0x26, uint64_t)
#define VHOST_VDPA_GET_DEVICE_ID _IOR(VHOST_VIRTIO, 0x70, uint32_t)
#define VHOST_VDPA_GET_STATUS _IOR(VHOST_VIRTIO, 0x71, uint8_t)
#define VHOST_VDPA_SET_STATUS _IOW(VHOST_VIRTIO, 0x72, uint8_t)
#define VHOST_VDPA_GET_CONFIG _IOR(VHOST_VIRTIO, 0x73, struct vhost_vdpa_config)
#define VHOST_VDPA_SET_CONFIG _IOW(VHOST_VIRTIO, 0x74, struct vhost_vdpa_config)
#define VHOST_VDPA_SET_VRING_ENABLE _IOW(VHOST_VIRTIO, 0x75, struct vhost_vring_state)
#define VHOST_VDPA_GET_VRING_NUM _IOR(VHOST_VIRTIO, 0x76, uint16_t)
#define VHOST_VDPA_SET_CONFIG_CALL _IOW(VHOST_VIRTIO, 0x77, int)
#define VHOST_VDPA_GET_IOVA_RANGE _IOR(VHOST_VIRTIO, 0x78, struct vhost_vdpa_iova_range)
#define VHOST_VDPA_GET_CONFIG_SIZE _IOR(VHOST_VIRTIO, 0x79, uint32_t)
#define VHOST_VDPA_GET_AS_NUM _IOR(VHOST_VIRTIO, 0x7A, unsigned int)
#define VHOST_VDPA_GET_VRING_GROUP _IOWR(VHOST_VIRTIO, 0x7B, struct vhost_vring_state)
#define VHOST_VDPA_SET_GROUP_ASID _IOW(VHOST_VIRTIO, 0x7C, struct vhost_vring_state)
#define VHOST_VDPA_SUSPEND _IO(VHOST_VIRTIO, 0x7D)
#define VHOST_VDPA_RESUME _IO(VHOST_VIRTIO, 0x7E)
#define VHOST_VDPA_GET_VRING_DESC_GROUP _IOWR(VHOST_VIRTIO, 0x7F, struct vhost_vring_state)
#define VHOST_VDPA_GET_VRING_SIZE _IOWR(VHOST_VIRTIO, 0x82, struct vhost_vring_state)  /* 6.9+ (R46) */
#define VHOST_VDPA_GET_VQS_COUNT _IOR(VHOST_VIRTIO, 0x80, uint32_t)
#define VHOST_VDPA_GET_GROUP_NUM _IOR(VHOST_VIRTIO, 0x81, uint32_t)

#endif
