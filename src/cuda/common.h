// CUDA backend host code: owned device and pinned memory and events (the check macro and the
// launch helpers are kernels/common.cuh). Plain C++, so g++ translation units can include it.
#pragma once

#include <cuda_runtime_api.h>
#include <cublas_v2.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "kernels/common.cuh"
#include "sparseprox/error.h"

namespace sparseprox {
namespace cuda {

// One owned allocation (move-only), from `Memory::allocate` and given back by `Memory::free`.
// The two kinds below differ only in where the memory lives and in the copies they offer.
template <class T, class Memory>
class OwnedBuffer {
public:
    OwnedBuffer() = default;
    explicit OwnedBuffer(std::size_t n) { allocate(n); }
    ~OwnedBuffer() { release(); }

    OwnedBuffer(const OwnedBuffer&) = delete;
    OwnedBuffer& operator=(const OwnedBuffer&) = delete;
    OwnedBuffer(OwnedBuffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
    OwnedBuffer& operator=(OwnedBuffer&& other) noexcept {
        if (this != &other) {
            release();
            data_ = std::exchange(other.data_, nullptr);
            size_ = std::exchange(other.size_, 0);
        }
        return *this;
    }

    // Drops the old contents; n == 0 frees.
    void allocate(std::size_t n) {
        release();
        if (n == 0) return;
        data_ = static_cast<T*>(Memory::allocate(n * sizeof(T)));
        size_ = n;
    }
    // Grows (dropping the contents) when fewer than n elements are held.
    void reserve(std::size_t n) {
        if (n > size_) allocate(n);
    }

    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return size_; }
    std::size_t bytes() const { return size_ * sizeof(T); }
    bool empty() const { return size_ == 0; }

protected:
    void release() noexcept {
        if (data_) Memory::free(data_);  // never throws; an error here has nowhere useful to go
        data_ = nullptr;
        size_ = 0;
    }

    T* data_ = nullptr;
    std::size_t size_ = 0;
};

struct DeviceMemory {
    static void* allocate(std::size_t bytes) {
        void* p = nullptr;
        check_status(cudaMalloc(&p, bytes), "cudaMalloc", __FILE__, __LINE__);
        return p;
    }
    static void free(void* p) noexcept { cudaFree(p); }
};

struct PinnedMemory {
    static void* allocate(std::size_t bytes) {
        void* p = nullptr;
        check_status(cudaMallocHost(&p, bytes), "cudaMallocHost", __FILE__, __LINE__);
        return p;
    }
    static void free(void* p) noexcept { cudaFreeHost(p); }
};

// Device memory owned by one object (move-only). Copies are explicit and take the stream.
template <class T>
class DeviceBuffer : public OwnedBuffer<T, DeviceMemory> {
    using Base = OwnedBuffer<T, DeviceMemory>;
    using Base::data_;
    using Base::size_;

public:
    using Base::Base;
    using Base::bytes;

    // Host-to-device copy of n elements into [offset, offset + n). From pageable memory the call
    // returns once the source has been staged, so `src` may be reused at once.
    void copy_from_host(const T* src, std::size_t n, cudaStream_t stream, std::size_t offset = 0) {
        check_range(offset, n);
        if (n == 0) return;
        check_status(cudaMemcpyAsync(data_ + offset, src, n * sizeof(T), cudaMemcpyHostToDevice, stream),
                     "cudaMemcpyAsync (host to device)", __FILE__, __LINE__);
    }
    // Device-to-host copy of n elements from [offset, offset + n); the data is in `dst` after the
    // stream is synchronized.
    void copy_to_host(T* dst, std::size_t n, cudaStream_t stream, std::size_t offset = 0) const {
        check_range(offset, n);
        if (n == 0) return;
        check_status(cudaMemcpyAsync(dst, data_ + offset, n * sizeof(T), cudaMemcpyDeviceToHost, stream),
                     "cudaMemcpyAsync (device to host)", __FILE__, __LINE__);
    }
    void fill_zero(cudaStream_t stream) {
        if (size_ == 0) return;
        check_status(cudaMemsetAsync(data_, 0, bytes(), stream), "cudaMemsetAsync", __FILE__, __LINE__);
    }

private:
    void check_range(std::size_t offset, std::size_t n) const {
        if (offset > size_ || n > size_ - offset)
            throw Error("DeviceBuffer: copy of " + std::to_string(n) + " elements at offset " +
                        std::to_string(offset) + " exceeds its " + std::to_string(size_));
    }
};

// Page-locked host memory (move-only): the target of small status copies and the staging of
// uploads that must not synchronize the host.
template <class T>
class PinnedBuffer : public OwnedBuffer<T, PinnedMemory> {
    using Base = OwnedBuffer<T, PinnedMemory>;

public:
    using Base::Base;
    T& operator[](std::size_t i) { return this->data_[i]; }
    const T& operator[](std::size_t i) const { return this->data_[i]; }
};

// A CUDA event without timing (move-only), to know when queued work has passed a point.
class Event {
public:
    Event() { check_status(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreateWithFlags", __FILE__, __LINE__); }
    ~Event() {
        if (event_) cudaEventDestroy(event_);
    }
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    Event(Event&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
    Event& operator=(Event&& other) noexcept {
        if (this != &other) {
            if (event_) cudaEventDestroy(event_);
            event_ = std::exchange(other.event_, nullptr);
        }
        return *this;
    }

    void record(cudaStream_t stream) { check_status(cudaEventRecord(event_, stream), "cudaEventRecord", __FILE__, __LINE__); }
    void synchronize() const { check_status(cudaEventSynchronize(event_), "cudaEventSynchronize", __FILE__, __LINE__); }

private:
    cudaEvent_t event_ = nullptr;
};

}  // namespace cuda
}  // namespace sparseprox
